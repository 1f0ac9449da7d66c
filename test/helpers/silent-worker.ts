// A worker that takes no message and never ends by itself: a thread stuck (for the tests of the waits for one).
setInterval(() => {}, 1000);

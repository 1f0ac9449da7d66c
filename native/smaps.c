/*
 * /proc/PID/smaps read and parsed on the thread that reads it (one of koffi's), so the dump's main thread, busy while
 * its targets are frozen, gets each VMA as numbers instead of 700 bytes of text to split (60000 VMAs cost it 300 ms
 * as text). Only the regular form is parsed here: a header line in the kernel's layout, then `Name:<spaces>digits`
 * lines, each optionally followed by ` kB`, with exactly the names of the first such VMA in the same order, and one
 * VmFlags line anywhere. Any other VMA is handed back as the span of its text, for the JavaScript parser
 * (src/proc/smaps.ts) to read and, where it is malformed, to say what is wrong with it.
 * The record layout is mirrored in src/native/smaps-scan.ts.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#define MAX_FIELDS 48
#define FIELD_NAME_MAX 32
/* where the kernel pads a 64-bit maps line's name to (seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)), plus one */
#define NAME_COLUMN (25 + 8 * 6 - 1 + 1)

/* The field names every regular VMA has, in order: set by the first regular VMA; read by the caller. */
struct smaps_order {
	uint32_t count;
	uint8_t len[MAX_FIELDS];
	char name[MAX_FIELDS][FIELD_NAME_MAX];
};

/* Words of the result header at the start of `out`, then of each record after it (doubles, but for R_START..R_OFFSET). */
enum { H_RECORDS, H_PARSED, H_FILLED, H_EOF, H_LINES, HEADER };
enum {
	R_START, R_END, R_OFFSET, /* uint64 */
	R_REGULAR,                /* 1: parsed here; 0: only R_TEXT, R_TEXT_END and R_LINE are set */
	R_TEXT, R_TEXT_END,       /* the VMA's bytes in buf, header line first */
	R_LINE,                   /* lines before its header, from the start of buf */
	R_INODE, R_MODE_AT, R_DEV_AT, R_DEV_LEN, R_NAME_AT, R_NAME_LEN /* -1: no name */, R_FLAGS_AT, R_FLAGS_LEN /* -1: no VmFlags line */,
	R_VALUES
};
#define RECORD (R_VALUES + MAX_FIELDS)

static int is_hex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* Lowercase hex digits at p (at most 16) into *v; returns how many, 0 when none or too many. */
static size_t hex(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	size_t n = 0;
	uint64_t x = 0;
	while (p + n < end && is_hex(p[n])) {
		if (n == 16)
			return 0;
		x = x * 16 + (uint64_t)(p[n] <= '9' ? p[n] - '0' : p[n] - 'a' + 10);
		n++;
	}
	*v = x;
	return n;
}

/* Decimal digits at p (at most 15: exact as a double) into *v; returns how many, 0 when none or too many. */
static size_t dec(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
	size_t n = 0;
	uint64_t x = 0;
	while (p + n < end && p[n] >= '0' && p[n] <= '9') {
		if (n == 15)
			return 0;
		x = x * 10 + (uint64_t)(p[n] - '0');
		n++;
	}
	*v = x;
	return n;
}

static void put_u64(double *slot, uint64_t v) { memcpy(slot, &v, sizeof v); }

/* A header line [p, eol) into rec; 0 when it is not in the kernel's layout. */
static int header(const uint8_t *buf, const uint8_t *p, const uint8_t *eol, double *rec)
{
	const uint8_t *line = p;
	uint64_t start, end, offset, major, minor, inode;
	size_t n;
	if (!(n = hex(p, eol, &start)) || p + n >= eol || p[n] != '-')
		return 0;
	p += n + 1;
	if (!(n = hex(p, eol, &end)) || p + n >= eol || p[n] != ' ' || end <= start)
		return 0;
	p += n + 1;
	if (eol - p < 5 || (p[0] != 'r' && p[0] != '-') || (p[1] != 'w' && p[1] != '-') || (p[2] != 'x' && p[2] != '-') ||
	    (p[3] != 'p' && p[3] != 's') || p[4] != ' ')
		return 0;
	rec[R_MODE_AT] = (double)(p - buf);
	p += 5;
	if (!(n = hex(p, eol, &offset)) || p + n >= eol || p[n] != ' ')
		return 0;
	p += n + 1;
	const uint8_t *dev = p;
	if (!(n = hex(p, eol, &major)) || p + n >= eol || p[n] != ':')
		return 0;
	p += n + 1;
	if (!(n = hex(p, eol, &minor)) || p + n >= eol || p[n] != ' ')
		return 0;
	rec[R_DEV_AT] = (double)(dev - buf);
	rec[R_DEV_LEN] = (double)(p + n - dev);
	p += n + 1;
	if (!(n = dec(p, eol, &inode)))
		return 0;
	p += n;
	put_u64(&rec[R_START], start);
	put_u64(&rec[R_END], end);
	put_u64(&rec[R_OFFSET], offset);
	rec[R_INODE] = (double)inode;
	rec[R_NAME_AT] = 0;
	rec[R_NAME_LEN] = -1;
	/* no name: nothing after the inode but spaces (the kernel ends the line of an anonymous VMA with one) */
	const uint8_t *s = p;
	while (s < eol && *s == ' ')
		s++;
	if (s == eol)
		return 1;
	/* the name, where the kernel's padding puts it (anything else: the JavaScript parser's rules) */
	size_t prefix = (size_t)(p - line);
	size_t at = (prefix > NAME_COLUMN - 1 ? prefix : NAME_COLUMN - 1) + 1;
	if ((size_t)(eol - line) < at || s < line + at || p == s)
		return 0;
	rec[R_NAME_AT] = (double)(line + at - buf);
	rec[R_NAME_LEN] = (double)((size_t)(eol - line) - at);
	return 1;
}

static int is_name(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

/*
 * A field line [p, eol) of the VMA in rec, as its field `i`: 1 when regular, 0 when not. The first regular VMA
 * (order->count == 0 until it is done: `learning`) sets the names.
 */
static int field(const uint8_t *p, const uint8_t *eol, double *rec, size_t i, struct smaps_order *order, int learning)
{
	const uint8_t *colon = p;
	while (colon < eol && is_name(*colon))
		colon++;
	size_t len = (size_t)(colon - p);
	if (colon == eol || *colon != ':' || len == 0 || len >= FIELD_NAME_MAX || i >= MAX_FIELDS)
		return 0;
	if (learning) {
		memcpy(order->name[i], p, len);
		order->len[i] = (uint8_t)len;
	} else if (i >= order->count || order->len[i] != len || memcmp(order->name[i], p, len) != 0) {
		return 0;
	}
	const uint8_t *d = colon + 1;
	while (d < eol && *d == ' ')
		d++;
	uint64_t v;
	size_t n = dec(d, eol, &v);
	if (!n)
		return 0;
	d += n;
	if (d == eol)
		rec[R_VALUES + i] = (double)v;
	else if (eol - d == 3 && d[0] == ' ' && d[1] == 'k' && d[2] == 'B')
		rec[R_VALUES + i] = (double)v * 1024;
	else
		return 0;
	return 1;
}

static const uint8_t *line_end(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));
	return eol ? eol : end;
}

/*
 * The VMA whose text starts at `from` (its header line, or lines before any header) and ends before the next line
 * that starts with a lowercase hex digit (where the JavaScript parser starts one too), or at `end` when `eof`. One
 * pass over its lines finds that end and, while the VMA is regular, parses them into rec (R_REGULAR says whether
 * it stayed so; the first regular VMA sets `order`). Returns where it ends and adds its newlines to *lines; NULL
 * when the text ends first and more may follow (it is parsed again, whole, from the next piece).
 */
static const uint8_t *vma(const uint8_t *buf, const uint8_t *from, const uint8_t *end, int eof, double *rec,
			  struct smaps_order *order, size_t *lines)
{
	const uint8_t *p = from, *eol = line_end(from, end);
	int learning = order->count == 0;
	int regular = is_hex(*from) && header(buf, from, eol, rec);
	size_t fields = 0, newlines = 0;
	rec[R_FLAGS_AT] = 0;
	rec[R_FLAGS_LEN] = -1;
	for (;;) {
		if (eol == end) { /* a last line without its newline */
			if (!eof)
				return NULL;
			p = end;
			break;
		}
		newlines++;
		p = eol + 1;
		if (p == end && !eof)
			return NULL;
		if (p == end || is_hex(*p))
			break;
		eol = line_end(p, end);
		if (!regular || eol == p)
			continue;
		if (eol - p >= 8 && memcmp(p, "VmFlags:", 8) == 0) {
			regular = rec[R_FLAGS_LEN] < 0;
			rec[R_FLAGS_AT] = (double)(p + 8 - buf);
			rec[R_FLAGS_LEN] = (double)(eol - p - 8);
		} else {
			regular = field(p, eol, rec, fields++, order, learning);
		}
	}
	if (regular && learning) {
		if (fields == 0)
			regular = 0;
		else
			order->count = (uint32_t)fields;
	}
	rec[R_REGULAR] = regular && fields == order->count;
	*lines += newlines;
	return p;
}

/*
 * Move the `carry_len` bytes at `carry` (text after the last VMA parsed, from the previous call) to the start of
 * `buf`, read `fd` into the rest until `buf` (`cap` bytes) is full or the file ends, and parse each whole VMA: one
 * followed by another's header, and at the end of the file the last. `out` gets the result header, then up to
 * `max_records` records. Returns 0, or -errno of a failed read (the carry is then in `buf` already).
 */
long pagesnap_smaps_next(int fd, const uint8_t *carry, size_t carry_len, uint8_t *buf, size_t cap, double *out,
			 size_t max_records, struct smaps_order *order)
{
	if (carry_len > cap)
		return -EINVAL;
	if (carry_len)
		memmove(buf, carry, carry_len);
	size_t filled = carry_len;
	int eof = 0;
	while (filled < cap) {
		ssize_t n = read(fd, buf + filled, cap - filled);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			eof = 1;
			break;
		}
		filled += (size_t)n;
	}
	const uint8_t *end = buf + filled;
	size_t records = 0, lines = 0;
	const uint8_t *from = buf;
	while (records < max_records && from < end) {
		double *rec = out + HEADER + records * RECORD;
		rec[R_LINE] = (double)lines;
		const uint8_t *to = vma(buf, from, end, eof, rec, order, &lines);
		if (!to)
			break;
		rec[R_TEXT] = (double)(from - buf);
		rec[R_TEXT_END] = (double)(to - buf);
		records++;
		from = to;
	}
	out[H_RECORDS] = (double)records;
	out[H_PARSED] = (double)(from - buf);
	out[H_FILLED] = (double)filled;
	out[H_EOF] = eof && from == end;
	out[H_LINES] = (double)lines;
	return 0;
}

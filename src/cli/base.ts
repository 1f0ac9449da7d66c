/**
 * What every pagesnap command shares: `--json`, and errors printed as one line (what failed, where, the errno
 * name, what to do) with a non-zero exit code.
 */
import { constants } from 'node:os';
import { Command, Errors } from '@oclif/core';
import { PagesnapError, NativeError } from '../native/index.js';
import { toJson, writeJson } from '../render/json.js';
import { STANDARD_OUTPUT } from '../snapshot/standard-output.js';

/** Exit codes: 1 the operation failed, 2 the command line was wrong. */
export const EXIT = { FAILED: 1, USAGE: 2 } as const;

export abstract class PagesnapCommand extends Command {
  static override enableJsonFlag = true;

  /** Where results and --json go: standard error when standard output carries data (a snapshot sent there). */
  protected results: NodeJS.WriteStream = process.stdout;

  /**
   * Send results and errors to standard error when the command line asks for a snapshot on standard output (-o -,
   * -o-, --output -, --output=-). Decided before parsing: not even a usage error may land in the pipe meant for it.
   */
  protected keepStandardOutputForSnapshot(): void {
    const argv = this.argv;
    const dash = (a: string, i: number) => a === '-o-' || a === '-o=-' || a === '--output=-' || ((a === '-o' || a === '--output') && argv[i + 1] === STANDARD_OUTPUT);
    if (argv.some(dash)) this.results = process.stderr;
  }

  /** Print a result: JSON when --json was given (bigints as hex strings), else the rendered text. */
  protected emit(result: unknown, render: () => string): unknown {
    if (this.jsonEnabled()) return result;
    if (this.results === process.stdout) this.log(render());
    else this.results.write(`${render()}\n`);
    return undefined;
  }

  /**
   * JSON to a terminal is colourised (oclif's way); anywhere else it is written as it is made: oclif tokenises and
   * colourises it whatever the output, which took 6 of the 8 s of `inspect --json` on 60000 regions (48 MB).
   */
  override logJson(json: unknown): void {
    if (this.results === process.stdout && process.stdout.isTTY) return super.logJson(toJson(json));
    writeJson(json, (text) => this.results.write(text));
    this.results.write('\n');
  }

  /**
   * Report an error after the result has been printed (the result stands: say what is wrong with it): one line on
   * stderr and the error's exit code, without throwing away the output.
   */
  protected failAfter(err: PagesnapError): void {
    process.stderr.write(`pagesnap ${this.id ?? ''}: ${errorLine(err.message, err.code, err.hint)}\n`);
    process.exitCode = err.exitCode;
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (err instanceof Errors.ExitError) throw err;
    // The error is reported here; oclif's "did not parse its arguments" warning (NODE_ENV=test/development) would
    // only add a second, misleading line when it was the parse that failed.
    this.parsed = true;
    const usage = err instanceof Errors.CLIError && !(err instanceof PagesnapError) && (err.oclif?.exit === 2 || /flag|argument|Unexpected/i.test(err.message));
    const code = usage ? EXIT.USAGE : err instanceof PagesnapError ? (err as PagesnapError).exitCode : EXIT.FAILED;
    const hint = err instanceof PagesnapError ? (err as PagesnapError).hint : err instanceof NativeError ? hintFor(err) : usage ? `see pagesnap ${this.id ?? ''} --help` : undefined;
    const message = usage ? usageLine(err.message) : err.message;
    process.stderr.write(`pagesnap ${this.id ?? ''}: ${errorLine(message.split('\n')[0]!, usage ? undefined : (err as { code?: string }).code, hint)}\n`);
    if (this.jsonEnabled?.()) {
      this.results.write(`${JSON.stringify({ error: { message, code: (err as { code?: string }).code ?? null, hint: hint ?? null } })}\n`);
    }
    if (process.env.PAGESNAP_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = code;
    return undefined;
  }
}

/**
 * An error's line: what failed, the errno name where the message does not say it already, and what to do. (A code
 * that is not an errno, as audit's EDATALOSS, is for --json only.)
 */
export function errorLine(message: string, code: string | undefined, hint: string | undefined): string {
  const named = code && Object.hasOwn(constants.errno, code) && !new RegExp(`\\b${code}\\b`).test(message) ? `${message}: ${code}` : message;
  return `${named}${hint ? ` — ${hint}` : ''}`;
}

/**
 * oclif's usage errors span lines (a heading, its details, "See more help with --help"); the first alone can say
 * nothing ("Parsing --level"). One line of all of it: "--level: Expected an integer greater than or equal to 1 but
 * received: -1"; "missing 1 required arg: pid (process id to inspect)".
 */
export function usageLine(message: string): string {
  const [head = '', ...details] = message.split('\n').map((l) => l.trim()).filter((l) => l && l !== 'See more help with --help');
  // (a heading that says nothing: "The following error occurred:", then the error)
  if (/^The following errors? occurred:$/.test(head) && details.length) return details.join('; ');
  const parsing = /^Parsing (--[\w-]+)$/.exec(head);
  if (parsing) return [parsing[1], ...details].join(': ');
  const missing = /^Missing (\d+ required args?):$/.exec(head);
  if (missing) {
    const args = details.map((d) => {
      const [name, ...about] = d.split(/\s{2,}/);
      return about.length ? `${name} (${about.join(' ')})` : name;
    });
    return `missing ${missing[1]}: ${args.join(', ')}`;
  }
  return [head, ...details].join('; ');
}

function hintFor(e: NativeError): string | undefined {
  switch (e.code) {
    case 'EPERM':
    case 'EACCES':
      return 'run as root or as the owner of the target';
    case 'ESRCH':
      return 'the target process is gone';
    case 'ENOMEM':
      return 'not enough memory or address space';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'free some space, or write elsewhere';
    case 'EPIPE':
      return 'the program reading the output stopped before it was complete';
    default:
      return undefined;
  }
}

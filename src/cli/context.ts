/**
 * What a command module gets from the CLI (main.ts): where output goes, the shared `--root` option,
 * and a way to set the exit code without throwing. Commands live one a file under src/cli/.
 */
import type { Option } from 'commander';
import type { Readable } from 'node:stream';

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  stderrIsTTY: boolean;
  stdin: Readable;
  env: NodeJS.ProcessEnv;
}

export interface CommandContext {
  io: CliIO;
  /** A fresh `--root <dir>` option with the CLI's default ($PRERENDER_ROOT, else ./cache). */
  rootOption(): Option;
  /** Sets the process exit code (1: some item failed); usage errors throw PrerenderError instead. */
  setExitCode(code: number): void;
}

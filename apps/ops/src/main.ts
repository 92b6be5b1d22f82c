import 'reflect-metadata';
import { runCli } from './cli';
import { EXIT } from './output';

/** `npm run ops -- <command>`: see `npm run ops -- --help` and README "Ops". */
runCli(process.argv.slice(2)).then(
  (code) => {
    // Exit once stdout is flushed (a pipe would otherwise lose the end of a long --json answer).
    process.stdout.write('', () => process.exit(code));
  },
  (error: unknown) => {
    process.stderr.write(`ops: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(EXIT.failed);
  },
);

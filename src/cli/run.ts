/** The Node CLI's entry point: bundled into dist/bundle/tsbox.js, which bin/tsbox runs for what it does not answer itself. */
import { main } from './main';

void main(process.argv.slice(2)).then((code) => process.exit(code));

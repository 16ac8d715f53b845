/** The daemon code's entry point: bundled into dist/bundle/shim.js, which the native front runs. */
import { main } from './main';

void main(process.env).then((code) => {
  if (code >= 0) process.exit(code);
});

import { EngineError } from './errors';

/** Container and exec ids, checked before they touch a path (docs/architecture.md). */
const ID = /^[\w+\-.]+$/;

export function validateId(id: string, what = 'container id'): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > 1024 || !ID.test(id) || id === '.' || id === '..') {
    throw EngineError.invalidArgument(`invalid ${what} "${id}": use letters, digits, _ + - . (not "." or "..")`);
  }
  return id;
}

/**
 * runc-style command-line parsing: global flags, then a command, its flags and positional
 * arguments. Flags take `--flag value`, `--flag=value` and single-dash forms alike.
 */

export interface FlagSpec {
  /** Names without dashes, first is canonical: ['bundle', 'b']. */
  names: string[];
  /** A boolean flag takes no value. */
  bool?: boolean;
  /** May be given several times (values collected). */
  multi?: boolean;
}

export interface Parsed {
  flags: Map<string, string[]>;
  positional: string[];
}

export class UsageError extends Error {}

export function parseArgs(argv: string[], specs: FlagSpec[], stopAtPositional: boolean): Parsed {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) for (const n of s.names) byName.set(n, s);
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positional.push(a);
      if (stopAtPositional) {
        i++;
        break;
      }
      continue;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown flag ${a}`);
    const key = spec.names[0];
    let value: string;
    if (spec.bool) {
      value = eq >= 0 ? body.slice(eq + 1) : 'true';
    } else if (eq >= 0) {
      value = body.slice(eq + 1);
    } else {
      if (i + 1 >= argv.length) throw new UsageError(`flag ${a} needs a value`);
      value = argv[++i];
    }
    const list = flags.get(key) ?? [];
    if (!spec.multi) list.length = 0;
    list.push(value);
    flags.set(key, list);
  }
  positional.push(...argv.slice(i));
  return { flags, positional };
}

export function flag(p: Parsed, name: string): string | undefined {
  const v = p.flags.get(name);
  return v ? v[v.length - 1] : undefined;
}

export function boolFlag(p: Parsed, name: string): boolean {
  const v = flag(p, name);
  return v !== undefined && v !== 'false';
}

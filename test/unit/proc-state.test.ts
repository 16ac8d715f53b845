import { IllegalTransition, ProcLife, type Phase, type ProcKind } from '../../src/shim/proc-state';

type Exit = { status: number };
const exit = (status: number): Exit => ({ status });

/** Drives a fresh process of `kind` into `phase` through legal transitions only. */
function at(kind: ProcKind, phase: Phase): ProcLife<Exit> {
  const p = new ProcLife<Exit>(kind, kind === 'exec' ? 'e1' : '');
  const path: Record<Phase, (p: ProcLife<Exit>) => void> = {
    created: () => undefined,
    starting: (q) => q.begin(),
    running: (q) => (q.begin(), q.started()),
    exited: (q) => (q.begin(), q.started(), q.reaped(exit(3))),
    draining: (q) => (q.begin(), q.started(), q.reaped(exit(3)), q.publishing()),
    stopped: (q) => (q.begin(), q.started(), q.reaped(exit(3)), q.publishing(), q.published()),
  };
  path[phase](p);
  expect(p.phase).toBe(phase);
  return p;
}

const PHASES: Phase[] = ['created', 'starting', 'running', 'exited', 'draining', 'stopped'];
const settled = async (p: ProcLife<Exit>): Promise<boolean> => {
  let done = false;
  void p.waited.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('ProcLife transitions', () => {
  // Every (phase, transition) pair: the legal ones land where the diagram says, the rest throw.
  const legal: Record<string, Phase> = {
    'created begin': 'starting',
    'created abandon': 'stopped',
    'starting started': 'running',
    'exited publishing': 'draining',
    'draining published': 'stopped',
  };
  const moves: Record<string, (p: ProcLife<Exit>) => unknown> = {
    begin: (p) => p.begin(),
    started: (p) => p.started(),
    publishing: (p) => p.publishing(),
    published: (p) => p.published(),
    abandon: (p) => p.abandon(1),
  };
  for (const phase of PHASES) {
    for (const [name, move] of Object.entries(moves)) {
      const to = legal[`${phase} ${name}`];
      it(`${phase} --${name}--> ${to ?? 'refused'}`, () => {
        const p = at('init', phase);
        if (to) {
          move(p);
          expect(p.phase).toBe(to);
        } else {
          expect(() => move(p)).toThrow(IllegalTransition);
          expect(p.phase).toBe(phase);
        }
      });
    }
  }

  it('takes an exit only when created or running, and only once', () => {
    for (const phase of PHASES) {
      const p = at('init', phase);
      const taken = p.reaped(exit(9));
      expect([phase, taken]).toEqual([phase, phase === 'created' || phase === 'running']);
    }
    expect(at('exec', 'created').reaped(exit(9))).toBe(false);
    const p = at('init', 'running');
    p.reaped(exit(1));
    expect(p.reaped(exit(2))).toBe(false);
    expect(p.publishing()).toEqual(exit(1));
  });

  it('holds an exit reaped while starting and hands it back once the start settles', () => {
    const ok = at('exec', 'starting');
    expect(ok.reaped(exit(5))).toBe(false);
    expect(ok.phase).toBe('starting');
    expect(ok.started()).toEqual(exit(5));
    expect(ok.reaped(exit(5))).toBe(true);

    const failedInit = at('init', 'starting');
    failedInit.reaped(exit(6));
    expect(failedInit.startFailed()).toEqual(exit(6));
    expect(failedInit.phase).toBe('created');

    const failedExec = at('exec', 'starting');
    expect(failedExec.startFailed()).toBeNull();
    expect([failedExec.phase, failedExec.exit?.status]).toEqual(['stopped', 255]);
  });
});

describe('ProcLife as containerd sees it', () => {
  it("resolves an exec's Wait when reaped, an init's only when its exit is published", async () => {
    const e = at('exec', 'running');
    e.reaped(exit(4));
    expect(await settled(e)).toBe(true);
    expect(e.exit?.status).toBe(4);
    expect(e.shown).toBe('stopped');

    const i = at('init', 'running');
    i.reaped(exit(4));
    expect(await settled(i)).toBe(false);
    expect([i.exit, i.shown]).toEqual([null, 'running']);
    i.publishing();
    expect(await settled(i)).toBe(false);
    i.published();
    expect(await settled(i)).toBe(true);
    expect([i.exit?.status, i.shown]).toEqual([4, 'stopped']);
  });

  it('dates an exit when it was reaped, not when it went out', () => {
    jest.useFakeTimers({ now: 1_000 });
    try {
      const i = at('init', 'running');
      i.reaped(exit(0));
      jest.setSystemTime(9_000);
      i.publishing();
      i.published();
      expect(i.exit?.at.getTime()).toBe(1_000);
    } finally {
      jest.useRealTimers();
    }
  });

  it('holds up the init exit while an exec is starting, running or not yet published', () => {
    const holds = PHASES.filter((ph) => at('exec', ph).holdsInitExit);
    expect(holds).toEqual(['starting', 'running', 'exited', 'draining']);
  });

  it('answers Start, Kill, Delete and Exec per phase', () => {
    const table = (kind: ProcKind) =>
      Object.fromEntries(
        PHASES.map((ph) => {
          const p = at(kind, ph);
          const v = (x: { ok: boolean; code?: string }) => (x.ok ? 'ok' : x.code);
          return [ph, [v(p.mayStart()), v(p.mayKill()), v(p.mayDelete()), p.acceptsExec()]];
        }),
      );
    const FP = 'FailedPrecondition';
    expect(table('init')).toEqual({
      created: ['ok', 'ok', 'ok', false],
      starting: [FP, 'ok', FP, false],
      running: [FP, 'ok', FP, true],
      exited: [FP, 'NotFound', FP, false],
      draining: [FP, 'NotFound', FP, false],
      stopped: [FP, 'NotFound', 'ok', false],
    });
    expect(table('exec')).toEqual({
      created: ['ok', FP, 'ok', false],
      starting: [FP, FP, FP, false],
      running: [FP, 'ok', FP, false],
      exited: [FP, 'NotFound', 'ok', false],
      draining: [FP, 'NotFound', 'ok', false],
      stopped: [FP, 'NotFound', 'ok', false],
    });
  });

  it('names the exec in its refusals', () => {
    expect(at('exec', 'created').mayKill()).toEqual({ ok: false, code: 'FailedPrecondition', reason: 'exec e1 has not started' });
    expect(at('exec', 'running').mayDelete()).toEqual({ ok: false, code: 'FailedPrecondition', reason: 'cannot delete a running exec e1' });
  });
});

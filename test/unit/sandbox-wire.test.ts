/** The lines tsbox-sandbox writes on its control socket, as the Node end reads them. */
import { parseWireMessage, sandboxError } from '../../src/sandbox/sandbox-process';

describe('sandbox wire messages', () => {
  it('reads answers, errors, exit and OOM events', () => {
    expect(parseWireMessage('{"id":3,"ok":{"pid":42,"stage":"created"}}')).toEqual({ kind: 'answer', id: 3, ok: { pid: 42, stage: 'created' }, err: null });
    const err = { step: 'setns /proc/self/ns/ipc', errno: 22, errnoName: 'EINVAL', field: 'linux.namespaces[5]', message: 'setns: EINVAL' };
    expect(parseWireMessage(JSON.stringify({ id: 4, err }))).toEqual({ kind: 'answer', id: 4, ok: undefined, err });
    expect(parseWireMessage('{"event":"exit","container":"c1","exec":null,"pid":7,"status":137}')).toEqual({
      kind: 'exit',
      event: { container: 'c1', exec: null, pid: 7, status: 137 },
    });
    expect(parseWireMessage('{"event":"exit","container":"c1","exec":"e1","pid":8,"status":0}')).toMatchObject({ event: { exec: 'e1' } });
    expect(parseWireMessage('{"event":"oom","container":"c1"}')).toEqual({ kind: 'oom', container: 'c1' });
  });

  it('skips what it cannot use', () => {
    for (const line of ['', 'not json', '[1]', 'null', '{"id":null,"err":{}}', '{"event":"exit","container":"c1"}', '{"event":"oom"}', '{"ok":{}}']) {
      expect(parseWireMessage(line)).toBeNull();
    }
  });

  it('maps a sandbox error to an engine error, a null field read as none', () => {
    const answer = parseWireMessage('{"id":1,"err":{"step":"open","errno":2,"errnoName":"ENOENT","field":null,"message":"no such container"}}');
    expect(answer?.kind === 'answer' && answer.err && sandboxError(answer.err)).toMatchObject({
      kind: 'NotFound',
      message: 'no such container',
      detail: { step: 'open', errno: 'ENOENT' },
    });
  });
});

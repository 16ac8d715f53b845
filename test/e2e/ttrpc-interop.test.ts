/**
 * Our ttrpc client against containerd's own ttrpc server (<grpc socket>.ttrpc): the Events
 * Forward call every shim uses to publish, read back through a `ctr events` subscriber.
 */
import { ChildProcess } from 'node:child_process';
import { Client, Code, callTyped } from '../../src/ttrpc';
import { containerd, google, packAny, timestamp } from '../../src/proto';
import { ctrSpawn, rig, uniqueId, waitForLine } from '../rig/rig';

const EVENTS = 'containerd.services.events.ttrpc.v1.Events';
const { ForwardRequest } = containerd.services.events.ttrpc.v1;

function forwardOOM(client: Client, containerId: string, topic = '/tasks/oom') {
  const event = packAny('containerd.events.TaskOOM', containerd.events.TaskOOM, { containerId });
  return callTyped(
    client,
    EVENTS,
    'Forward',
    ForwardRequest,
    { envelope: { timestamp: timestamp(), namespace: 'default', topic, event } },
    google.protobuf.Empty,
    { timeoutMs: 5000, metadata: { 'containerd-namespace-ttrpc': 'default' } },
  );
}

describe('ttrpc interop with containerd', () => {
  let events: ChildProcess;
  let client: Client;

  beforeAll(() => {
    events = ctrSpawn(['events']);
    client = new Client(rig().ttrpcAddress);
  });

  afterAll(() => {
    client.close();
    events.kill();
  });

  it('publishes a TaskOOM through Events/Forward and a ctr events subscriber prints it', async () => {
    const id = uniqueId('oom');
    // `ctr events` is not subscribed the instant it starts: forward until it shows up.
    let line: string | null = null;
    for (let attempt = 0; attempt < 40 && line === null; attempt++) {
      await forwardOOM(client, id);
      line = await waitForLine(events, new RegExp(`/tasks/oom.*"container_id":"${id}"`), 250).catch(() => null);
    }
    expect(line).toMatch(/ default \/tasks\/oom \{"container_id":"oom-[0-9a-f]+"\}$/);
  });

  it("surfaces containerd's own error status for an envelope it refuses", async () => {
    // Topics must start with "/" (containerd 1.6 and 2.x alike).
    const err = await forwardOOM(client, uniqueId('oom'), 'tasks/oom').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect((err as Error).message).toMatch(/topic/);
  });

  it('gets UNIMPLEMENTED from containerd for a service it does not serve', async () => {
    await expect(client.call('tsbox.NoSuch', 'Nothing', new Uint8Array())).rejects.toMatchObject({
      code: Code.UNIMPLEMENTED,
      message: 'service tsbox.NoSuch',
    });
  });
});

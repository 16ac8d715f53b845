/**
 * A CRI runtime.v1 client for tests, speaking gRPC to the rig's containerd the way
 * kubelet does (the .proto subset is in test/cri/api.proto, written from cri-api).
 */
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import * as path from 'node:path';
import { rig } from './rig';

const def = loader.loadSync(path.join(__dirname, '..', 'cri', 'api.proto'), { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };

export type Message = Record<string, unknown>;

export class Cri {
  private readonly client: grpc.Client & Record<string, (req: Message, cb: (err: grpc.ServiceError | null, res: Message) => void) => void>;

  constructor(address = rig().address) {
    this.client = new pkg.runtime.v1.RuntimeService(`unix://${address}`, grpc.credentials.createInsecure()) as unknown as Cri['client'];
  }

  call<T = Message>(method: string, req: Message): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client[method](req, (err, res) => (err ? reject(err) : resolve(res as T)));
    });
  }

  close(): void {
    this.client.close();
  }
}

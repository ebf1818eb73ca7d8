// One onnxruntime session in its own thread (see ort-session.ts). onnxruntime-node's run() holds the thread that
// calls it for the whole inference, so it is called here rather than on a service's event loop. Plain JavaScript: it
// runs as it is both from the source tree (tests) and from dist/ (the build copies it).
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

const messageOf = (error) => String(error?.message ?? error);

let session;
try {
  session = await ort.InferenceSession.create(workerData.bytes, workerData.options);
  parentPort.postMessage({ type: 'ready', inputNames: session.inputNames, outputNames: session.outputNames });
} catch (error) {
  parentPort.postMessage({ type: 'failed', message: messageOf(error) });
}

async function handle(message) {
  if (message.type === 'run') {
    try {
      const feeds = {};
      for (const [name, t] of Object.entries(message.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
      const outputs = await session.run(feeds);
      const result = {};
      for (const [name, t] of Object.entries(outputs)) result[name] = { type: t.type, data: t.data, dims: [...t.dims] };
      parentPort.postMessage({ type: 'result', id: message.id, outputs: result });
    } catch (error) {
      parentPort.postMessage({ type: 'error', id: message.id, message: messageOf(error) });
    }
  } else if (message.type === 'release') {
    try {
      await session?.release();
    } finally {
      parentPort.postMessage({ type: 'released' });
    }
  }
}

// In the order sent: a release waits for the runs before it (run() itself yields before it blocks).
let turn = Promise.resolve();
parentPort.on('message', (message) => {
  turn = turn.then(() => handle(message));
});

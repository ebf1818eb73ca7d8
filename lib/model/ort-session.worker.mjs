// One onnxruntime session in its own thread (see ort-session.ts). onnxruntime-node's run() holds the thread that
// calls it for the whole inference, so it is called here rather than on a service's event loop. Plain JavaScript: it
// runs as it is both from the source tree (tests) and from dist/ (the build copies it).
import { performance } from 'node:perf_hooks';
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
      for (const [name, t] of Object.entries(message.feeds)) {
        // onnxruntime-node refuses shared memory: the caller's shared input is copied here, off the caller's thread.
        const data = t.data.buffer instanceof SharedArrayBuffer ? new Float32Array(t.data) : t.data;
        feeds[name] = new ort.Tensor(t.type, data, t.dims);
      }
      const t0 = performance.now();
      const outputs = await session.run(feeds);
      const seconds = (performance.now() - t0) / 1000;
      const result = {};
      for (const [name, t] of Object.entries(outputs)) result[name] = { type: t.type, data: t.data, dims: [...t.dims] };
      parentPort.postMessage({ type: 'result', id: message.id, outputs: result, seconds });
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

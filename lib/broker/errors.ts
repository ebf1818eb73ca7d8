// The errors the broker raises and the one a handler throws to refuse a message for good. Every broker error extends
// BrokerError so that callers can tell messaging failures from their own.

/** Base class of every error raised by the broker itself. */
export class BrokerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BrokerError';
  }
}

/** An RPC got no reply in time. */
export class BrokerTimeoutError extends BrokerError {
  constructor(
    readonly queue: string,
    readonly timeoutMs: number,
  ) {
    super(`RPC to queue "${queue}" timed out after ${timeoutMs} ms`);
    this.name = 'BrokerTimeoutError';
  }
}

/** The RPC server could not handle the request (it was dead-lettered); `reason` is what it recorded. */
export class BrokerRpcError extends BrokerError {
  constructor(
    readonly queue: string,
    readonly reason: string,
  ) {
    super(`RPC to queue "${queue}" failed: ${reason}`);
    this.name = 'BrokerRpcError';
  }
}

/** A message was sent to a queue that does not exist (assert it first); nothing was stored. */
export class BrokerUnroutableError extends BrokerError {
  constructor(readonly queue: string) {
    super(`queue "${queue}" does not exist: the message was not stored (assert the queue before sending to it)`);
    this.name = 'BrokerUnroutableError';
  }
}

/** The broker was closed; nothing more can be sent or consumed through it. */
export class BrokerClosedError extends BrokerError {
  constructor(what = 'broker') {
    super(`${what} is closed`);
    this.name = 'BrokerClosedError';
  }
}

/**
 * Thrown by a handler for a message that can never succeed (bad payload, missing entity): the message goes to the
 * dead-letter queue at once with this error's message as the reason, without retries.
 */
export class PermanentMessageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentMessageError';
  }
}

// Typed storage errors: callers branch on `code` (or instanceof), never on message text.

export type StorageErrorCode =
  | 'OBJECT_NOT_FOUND'
  | 'INVALID_OBJECT_KEY'
  | 'INVALID_STORAGE_ARGUMENT'
  | 'OBJECT_SIZE_MISMATCH'
  | 'OBJECT_CORRUPT'
  | 'STORAGE_CONFIG_INVALID';

export abstract class StorageError extends Error {
  abstract readonly code: StorageErrorCode;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ObjectNotFoundError extends StorageError {
  readonly code = 'OBJECT_NOT_FOUND' as const;

  constructor(
    readonly key: string,
    options?: ErrorOptions,
  ) {
    super(`object not found: ${key}`, options);
  }
}

export class InvalidObjectKeyError extends StorageError {
  readonly code = 'INVALID_OBJECT_KEY' as const;

  constructor(
    readonly key: unknown,
    readonly reason: string,
  ) {
    // The key may be hostile (control characters, megabytes): show a bounded, escaped form.
    super(`invalid object key ${JSON.stringify(String(key).slice(0, 120))}: ${reason}`);
  }
}

/** A presign option, content type or prefix that cannot be honoured. */
export class InvalidStorageArgumentError extends StorageError {
  readonly code = 'INVALID_STORAGE_ARGUMENT' as const;
}

/** The bytes written differ from the size that was promised (signed upload) or allowed. */
export class ObjectSizeMismatchError extends StorageError {
  readonly code = 'OBJECT_SIZE_MISMATCH' as const;

  constructor(
    readonly key: string,
    readonly expectedBytes: number,
    /** Bytes seen before giving up: more than expected means the body was cut off at expected + 1. */
    readonly receivedBytes: number,
  ) {
    super(`object ${key}: expected ${expectedBytes} bytes, received ${receivedBytes > expectedBytes ? 'more' : receivedBytes}`);
  }
}

/** A local object file whose header cannot be read: written by something other than this store. */
export class ObjectCorruptError extends StorageError {
  readonly code = 'OBJECT_CORRUPT' as const;

  constructor(
    readonly key: string,
    detail: string,
  ) {
    super(`object ${key} is unreadable: ${detail}`);
  }
}

/** Bad storage configuration; the message names the setting (e.g. STORAGE_URL) and never echoes secrets. */
export class StorageConfigError extends StorageError {
  readonly code = 'STORAGE_CONFIG_INVALID' as const;
}

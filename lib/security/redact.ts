// Redaction of what a caller sent before it is kept (audit log) or logged: values under secret-looking names and
// strings that look like JWTs are replaced, long strings and deep or long structures are cut.

export const REDACTED = '[REDACTED]';
const SECRET_NAME = /pass(word|phrase)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|authori[sz]ation|credential|signature|cookie|session/i;
const JWT = /^[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*$/;
const MAX_STRING = 1000;
const MAX_DEPTH = 8;
const MAX_ITEMS = 100;

/** A copy of `value` that is safe to keep. */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') {
    if (JWT.test(value)) return REDACTED;
    return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…[${value.length - MAX_STRING} more characters]` : value;
  }
  if (value === null || typeof value !== 'object') {
    return typeof value === 'number' || typeof value === 'boolean' ? value : value === null ? null : String(value);
  }
  if (depth >= MAX_DEPTH) return '[TRUNCATED]';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((item) => redactSecrets(item, depth + 1));
    return value.length > MAX_ITEMS ? [...items, `…[${value.length - MAX_ITEMS} more items]`] : items;
  }
  return Object.fromEntries(
    Object.entries(value).map(([name, item]) => [name, SECRET_NAME.test(name) ? REDACTED : redactSecrets(item, depth + 1)]),
  );
}

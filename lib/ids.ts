// Id formats, checked before they reach a query: a malformed id is simply not found (Postgres would otherwise
// refuse the cast and the client would see an internal error).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const SHA256 = /^[0-9a-f]{64}$/;

export const isUuid = (value: string): boolean => UUID.test(value);
export const isSha256 = (value: string): boolean => SHA256.test(value);

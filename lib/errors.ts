// Typed API errors with stable codes (STYLE.md), and the translation of database errors so that none leaks.
import { GraphQLError } from 'graphql';

export type ErrorCode =
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'BAD_USER_INPUT'
  | 'RATE_LIMITED'
  | 'CONFLICT'
  | 'UNAVAILABLE'
  | 'INTERNAL_SERVER_ERROR';

function apiError(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { ...extensions, code } });
}

export const notFound = (entity: string, id: string): GraphQLError =>
  apiError('NOT_FOUND', `${entity} ${JSON.stringify(id)} was not found`, { entity, id });

export const badInput = (message: string, field?: string, details: Record<string, unknown> = {}): GraphQLError =>
  apiError('BAD_USER_INPUT', message, field ? { field, ...details } : details);

export const conflict = (message: string, details: Record<string, unknown> = {}): GraphQLError =>
  apiError('CONFLICT', message, details);

export const unauthenticated = (message = 'A valid bearer token is required'): GraphQLError =>
  apiError('UNAUTHENTICATED', message);

export const forbidden = (message = 'You are not allowed to do this'): GraphQLError => apiError('FORBIDDEN', message);

export const rateLimited = (retryAfterSeconds: number): GraphQLError =>
  apiError('RATE_LIMITED', `Rate limit exceeded; retry in ${retryAfterSeconds} s`, { retryAfterSeconds });

export const unavailable = (what: string): GraphQLError =>
  apiError('UNAVAILABLE', `${what} is unavailable right now; retry shortly`, { retryable: true });

export function isApiError(error: unknown): error is GraphQLError {
  return error instanceof GraphQLError && typeof error.extensions?.code === 'string';
}

interface PgLikeError {
  code?: string;
  constraint?: string;
  detail?: string;
}

/**
 * Turns a database driver error into an API error: a unique violation becomes CONFLICT, a lost connection UNAVAILABLE,
 * anything else an opaque internal error. The driver's text (SQL, table names) never reaches a client.
 */
export function translateDbError(error: unknown): GraphQLError {
  if (isApiError(error)) return error;
  const e = error as PgLikeError & { name?: string; message?: string };
  const name = e?.name ?? '';
  if (e?.code === '23505' || name === 'UniqueConstraintViolationException') {
    return conflict('A record with the same unique value already exists', { constraint: e.constraint });
  }
  if (
    name === 'ConnectionException' ||
    ['ECONNREFUSED', 'ECONNRESET', '57P01', '57P03', '08006', '08001', '08003'].includes(e?.code ?? '') ||
    /Connection terminated|ECONNREFUSED|connect ETIMEDOUT/.test(e?.message ?? '')
  ) {
    return unavailable('The database');
  }
  return apiError('INTERNAL_SERVER_ERROR', 'Internal error');
}

// The gateway's guard around every operation, as an Apollo Server plugin: operation limits and the caller's rate
// limit are decided when the request starts (before the document is validated or planned, so nothing reaches a
// subgraph), and every mutation root field is audited with its outcome once the response is known.
import { createHash } from 'node:crypto';
import { HeaderMap, type ApolloServerPlugin, type GraphQLRequestContextWillSendResponse } from '@apollo/server';
import { GraphQLError, parse, valueFromASTUntyped, type FieldNode, type GraphQLFormattedError } from 'graphql';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Identity } from '../lib/auth.js';
import { rateLimited } from '../lib/errors.js';
import { auditOutcome, type AuditPublisher } from '../lib/security/audit.js';
import {
  checkOperationLimits,
  countTokens,
  inspectOperation,
  operationLimitError,
  type InspectedOperation,
  type OperationLimitName,
  type OperationLimits,
} from '../lib/security/operation-limits.js';
import { operationCost, type RateLimiter } from '../lib/security/rate-limit.js';
import type { TraceContext } from '../lib/telemetry.js';

export interface GuardedContext {
  identity: Identity;
  trace: TraceContext;
  internal?: boolean;
}

export interface SecurityMetrics {
  refused: Counter<'limit'>;
  rateLimited: Counter;
  rateLimitErrors: Counter;
  audited: Counter<'outcome'>;
  auditFailures: Counter;
  authFailures: Counter<'reason'>;
}

export function createSecurityMetrics(registry: Registry): SecurityMetrics {
  return {
    refused: new Counter({
      name: 'lcd_operation_refused_total',
      help: 'Requests refused by an operation limit, by limit (tokens, rootFields, aliases, depth, cost, batch, bodyBytes)',
      labelNames: ['limit'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({ name: 'lcd_rate_limited_total', help: 'Requests refused by the per-identity rate limit', registers: [registry] }),
    rateLimitErrors: new Counter({
      name: 'lcd_rate_limit_errors_total',
      help: 'Rate-limit decisions that failed (Redis unreachable); the request was let through',
      registers: [registry],
    }),
    audited: new Counter({
      name: 'lcd_audit_events_total',
      help: 'Audit records published, by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    auditFailures: new Counter({ name: 'lcd_audit_publish_failures_total', help: 'Audit records that could not be published', registers: [registry] }),
    authFailures: new Counter({
      name: 'lcd_auth_failures_total',
      help: 'Requests refused because their token was missing or invalid, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
  };
}

export interface SecurityPluginOptions {
  limits: OperationLimits;
  /** null: rate limiting off. */
  rateLimiter: RateLimiter | null;
  /** Extra cost of root fields, e.g. { detectChanges: 10 }. */
  costs: Readonly<Record<string, number>>;
  audit: AuditPublisher;
  metrics: SecurityMetrics;
  log: Logger;
}

/** The bucket of one caller: tenant and subject (hashed: subjects are issuer-defined strings of any length). */
export function rateLimitKey(identity: Identity): string {
  return `${identity.tenant}:${createHash('sha256').update(identity.subject).digest('base64url').slice(0, 32)}`;
}

function rateLimitedError(retryAfterSeconds: number): GraphQLError {
  const error = rateLimited(retryAfterSeconds);
  return new GraphQLError(error.message, {
    extensions: { ...error.extensions, http: { status: 429, headers: new HeaderMap([['retry-after', String(retryAfterSeconds)]]) } },
  });
}

export function securityPlugin(options: SecurityPluginOptions): ApolloServerPlugin<GuardedContext> {
  const { limits, metrics, log } = options;

  const refuse = (limit: OperationLimitName, max: number, actual: number): GraphQLError => {
    metrics.refused.inc({ limit });
    return operationLimitError({ limit, max, actual });
  };

  return {
    async requestDidStart(requestContext) {
      const { identity } = requestContext.contextValue;
      const { query, operationName, variables } = requestContext.request;
      let inspected: InspectedOperation | null = null;
      let refusal: GraphQLError | undefined;

      if (typeof query === 'string') {
        const tokens = countTokens(query, limits.tokens);
        if (tokens !== null && tokens > limits.tokens) {
          refusal = refuse('tokens', limits.tokens, tokens);
        } else if (tokens !== null) {
          try {
            inspected = inspectOperation(requestContext.schema, parse(query, { noLocation: true }), operationName, variables);
          } catch {
            inspected = null; // a syntax error: Apollo Server reports it
          }
          const over = inspected && checkOperationLimits(inspected.measure, limits);
          if (over) refusal = refuse(over.limit, over.max, over.actual);
        }
      }

      // Subscription events are pushed by the platform, not asked for: fetching their fields costs the subscriber nothing.
      if (!refusal && options.rateLimiter && !requestContext.contextValue.internal) {
        const cost = operationCost(inspected?.rootFields.map((f) => f.fieldName) ?? [], options.costs);
        try {
          const decision = await options.rateLimiter.take(rateLimitKey(identity), cost);
          if (!decision.allowed) {
            metrics.rateLimited.inc();
            refusal = rateLimitedError(decision.retryAfterSeconds);
          }
        } catch (error) {
          // Failing open keeps the API up when Redis is not; the metric and the log say so.
          metrics.rateLimitErrors.inc();
          log.warn({ err: error }, 'rate limit decision failed; request let through');
        }
      }

      let delivered = false;
      return {
        async didResolveOperation() {
          if (!refusal) return;
          delivered = true;
          throw refusal;
        },
        async willSendResponse(responseContext) {
          // Parsing or validation failed before the operation was resolved: the refusal still answers, and alone.
          if (refusal && !delivered) replaceWithRefusal(responseContext, refusal);
          // The record is logged at once and sent to the broker while the response goes out: the caller does not wait
          // for the broker's confirm, and a failed send is counted and logged (with the record) as before.
          if (inspected?.operationType === 'mutation') void audit(responseContext, inspected);
        },
      };

      async function audit(responseContext: GraphQLRequestContextWillSendResponse<GuardedContext>, operation: InspectedOperation) {
        const body = responseContext.response.body;
        const errors = body.kind === 'single' ? body.singleResult.errors : body.initialResult.errors;
        await Promise.all(
          operation.rootFields.map(async (field) => {
            const { outcome, errorCode } = auditOutcome(field.responseKey, errors);
            try {
              await options.audit.publish({
                tenant: identity.tenant,
                actor: identity.subject,
                roles: identity.roles,
                operationName: operation.operationName,
                fieldName: field.fieldName,
                variables: argumentsOf(field.node, variables),
                outcome,
                errorCode,
                traceId: responseContext.contextValue.trace.traceId,
              });
              metrics.audited.inc({ outcome });
            } catch (error) {
              metrics.auditFailures.inc();
              log.error({ err: error, fieldName: field.fieldName, tenant: identity.tenant, subject: identity.subject, outcome }, 'audit record not published');
            }
          }),
        );
      }
    },
  };
}

/** The arguments a root field was called with, variables substituted: what the audit log keeps (redacted). */
function argumentsOf(node: FieldNode, variables: Record<string, unknown> | undefined): Record<string, unknown> {
  return Object.fromEntries((node.arguments ?? []).map((a) => [a.name.value, valueFromASTUntyped(a.value, variables ?? undefined)]));
}

function replaceWithRefusal(responseContext: GraphQLRequestContextWillSendResponse<GuardedContext>, refusal: GraphQLError): void {
  const { http: head, ...extensions } = refusal.extensions as { http?: { status?: number; headers?: Map<string, string> } } & Record<string, unknown>;
  const error: GraphQLFormattedError = { message: refusal.message, extensions };
  responseContext.response.body = { kind: 'single', singleResult: { errors: [error] } };
  responseContext.response.http.status = head?.status ?? 400;
  for (const [name, value] of head?.headers ?? []) responseContext.response.http.headers.set(name, value);
}

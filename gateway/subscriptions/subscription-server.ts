// graphql-ws on the gateway's GraphQL URL. Subscription fields are composed into the supergraph from the subgraphs'
// SDL; their events come from the owners' event logs (live over the broker's topic exchange, missed ones replayed),
// and each event's selection is resolved through the federated graph as the subscriber, so a subscriber only ever
// receives what it could have read with a query.
import type { Server } from 'node:http';
import {
  buildASTSchema,
  createSourceEventStream,
  execute,
  print,
  type ExecutionResult,
  GraphQLError,
  isObjectType,
  parse,
  printSchema,
  validate,
  type ExecutionArgs,
  type GraphQLFieldResolver,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import { AuthError, type Identity, type TokenVerifier } from '../../lib/auth.js';
import type { Broker, Subscription } from '../../lib/broker/broker.js';
import { LOGGED_EVENT_TYPE, type LoggedEvent } from '../../lib/events/event-log.js';
import { requestReplay } from '../../lib/events/replay-rpc.js';
import { checkOperationLimits, inspectOperation, operationLimitError, type OperationLimits } from '../../lib/security/operation-limits.js';
import { newTrace } from '../../lib/telemetry.js';
import { EventChannel } from './event-channel.js';
import { SharedResults, Subscriber } from './fan-out.js';
import { entityQuery, EntityFetcher, type ExecuteAs } from './entity-fetcher.js';
import { SUBSCRIPTION_FIELDS, type SubscriptionFieldSpec } from './fields.js';

export interface SubscriptionLimits {
  maxSubscriptionsPerConnection: number;
  maxSubscribesPerMinute: number;
  maxPendingEvents: number;
  maxBufferedBytes: number;
}

export const DEFAULT_SUBSCRIPTION_LIMITS: SubscriptionLimits = {
  maxSubscriptionsPerConnection: 100,
  maxSubscribesPerMinute: 300,
  maxPendingEvents: 1000,
  maxBufferedBytes: 4 * 1024 * 1024,
};

/** Close codes a client can act on (4xxx: application codes of the WebSocket protocol). */
export const CLOSE = {
  tokenExpired: { code: 4401, reason: 'Token expired: reconnect with a fresh token' },
  slowConsumer: { code: 4408, reason: 'Slow consumer: too many events waiting; reconnect and resume with afterSequence' },
  subscribeFlood: { code: 4429, reason: 'Too many subscribe messages on this connection' },
} as const;

export interface SubscriptionServerOptions {
  httpServer: Server;
  path: string;
  apiSchema: GraphQLSchema;
  verifier: TokenVerifier;
  broker: Broker;
  executeAs: ExecuteAs;
  registry: Registry;
  log: Logger;
  limits?: Partial<SubscriptionLimits>;
  /** The gateway's operation limits (tokens, root fields, aliases, depth, cost): a subscription document meets the
   * same ones as an HTTP operation (each event re-runs its selection, so an oversized one costs on every event). */
  operationLimits?: OperationLimits;
}

interface ConnectionState {
  identity: Identity;
  subscribes: number[];
  expiryTimer?: NodeJS.Timeout;
}

interface EventRoot {
  __event: LoggedEvent;
  __spec: SubscriptionFieldSpec;
}

interface SubscriptionContext {
  identity: Identity;
  socket: WebSocket;
  /** The graphql-ws id of the subscription (events are written to the socket under it). */
  subscriptionId: string;
}

function tokenFrom(params: Record<string, unknown> | undefined): string | undefined {
  const raw = params?.authorization ?? params?.Authorization ?? params?.token;
  if (typeof raw !== 'string') return undefined;
  return raw.startsWith('Bearer ') ? raw : `Bearer ${raw}`;
}

export async function startSubscriptionServer(options: SubscriptionServerOptions) {
  const limits = { ...DEFAULT_SUBSCRIPTION_LIMITS, ...options.limits };
  const { log, broker } = options;
  const active = new Gauge({ name: 'lcd_subscriptions_active', help: 'Open GraphQL subscriptions on this gateway', registers: [options.registry] });
  const delivered = new Counter({ name: 'lcd_subscription_events_total', help: 'Events delivered to subscribers', labelNames: ['field'] as const, registers: [options.registry] });
  const closed = new Counter({ name: 'lcd_subscription_closed_total', help: 'Connections closed by the gateway, by reason', labelNames: ['reason'] as const, registers: [options.registry] });
  const lag = new Histogram({
    name: 'lcd_subscription_delivery_lag_seconds',
    help: 'Time from an event being logged to it being sent to a subscriber',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [options.registry],
  });
  const fetcher = new EntityFetcher(options.executeAs);

  const channelFields = new WeakMap<EventChannel, string>();
  // Streams followed by local subscribers; events for other streams are ignored.
  const channels = new Map<string, Set<EventChannel>>();
  const listen = (stream: string, channel: EventChannel) => {
    let set = channels.get(stream);
    if (!set) channels.set(stream, (set = new Set()));
    set.add(channel);
    active.inc();
    let listening = true;
    return () => {
      if (!listening) return;
      listening = false;
      set.delete(channel);
      if (set.size === 0) channels.delete(stream);
      active.dec();
    };
  };

  // One exclusive queue per gateway instance: every replica serves its own clients.
  const brokerSubscription: Subscription = await broker.subscribe<LoggedEvent>(['#'], async (delivery) => {
    if (delivery.envelope.type !== LOGGED_EVENT_TYPE) return;
    const event = delivery.envelope.payload;
    for (const channel of channels.get(event.stream) ?? []) channel.push(event);
  });
  // After a broker outage, live events may have been missed: every stream catches up from its event log.
  // Caught up twice: when the connection is back, and when this gateway's private queue has been made again and bound
  // (its name changes), since what was published before that went nowhere (it is in the log all the same).
  let brokerWasHealthy = true;
  let queue = brokerSubscription.queue;
  const resyncAll = (why: string) => {
    log.info({ streams: channels.size, why }, 'resynchronising subscription streams from the event logs');
    for (const set of channels.values()) for (const channel of set) channel.resync();
  };
  const healthTimer = setInterval(() => {
    const healthy = broker.isHealthy();
    if (healthy && !brokerWasHealthy) resyncAll('broker connection back');
    brokerWasHealthy = healthy;
    if (healthy && brokerSubscription.queue !== queue) {
      queue = brokerSubscription.queue;
      resyncAll('event queue re-made');
    }
  }, 500);
  healthTimer.unref();

  const schema = buildSubscriptionSchema(options.apiSchema);
  const subscriptionType = schema.getSubscriptionType();

  const fieldResolver: GraphQLFieldResolver<unknown, SubscriptionContext> = async (source, args, ctx, info) => {
    const root = source as Partial<EventRoot> & Record<string, unknown>;
    if (root.__event && root.__spec) {
      const event = root.__event;
      if (info.fieldName === 'sequence') return event.sequence;
      if (info.fieldName === 'occurredAt') return event.occurredAt;
      const entity = root.__spec.entities[info.fieldName];
      if (entity) {
        const ref = entity(event);
        if (!ref) return null;
        const { query, variables } = entityQuery(ref, info);
        const result = await fetcher.fetch(ctx.identity, `${event.stream}#${event.sequence}`, query, variables);
        if (result.errors?.length) {
          const first = result.errors[0]!;
          throw new GraphQLError(first.message, { extensions: first.extensions });
        }
        return result.data?.__entity ?? null;
      }
      return event.payload[info.fieldName] ?? null;
    }
    return root?.[info.path.key as string] ?? root?.[info.fieldName] ?? null;
  };

  for (const [name, spec] of Object.entries(SUBSCRIPTION_FIELDS)) {
    const field = subscriptionType?.getFields()[name];
    if (!field) continue;
    field.resolve = (event: LoggedEvent) => ({ __event: event, __spec: spec }) satisfies EventRoot;
    field.subscribe = async (_root, args: Record<string, unknown>, ctx: SubscriptionContext) => {
      const check = async (query: string, variables: Record<string, unknown>) =>
        ((await options.executeAs(ctx.identity, query, variables)).errors ?? []).map((e) => String(e.extensions?.code ?? 'ERROR'));
      const refusal = spec.authorize ? await spec.authorize(args, check) : null;
      if (refusal) throw new GraphQLError(refusal, { extensions: { code: refusal.startsWith('You may not') ? 'FORBIDDEN' : 'NOT_FOUND' } });
      const stream = spec.stream(args, ctx.identity);
      const afterSequence = typeof args.afterSequence === 'number' ? args.afterSequence : null;
      if (afterSequence !== null && afterSequence < 0) throw new GraphQLError('afterSequence must be 0 or more', { extensions: { code: 'BAD_USER_INPUT', field: 'afterSequence' } });
      let stop = () => undefined as void;
      const channel = new EventChannel({
        afterSequence,
        replay: (after) => requestReplay(broker, ctx.identity.tenant, stream, after),
        maxPending: limits.maxPendingEvents,
        accept: (event) => (event.tenant === ctx.identity.tenant || event.tenant === '*') && (spec.accept?.(event, args) ?? true),
        isFinal: spec.isFinal,
        onOverflow: () => {
          closed.inc({ reason: 'slow_consumer' });
          ctx.socket.close(CLOSE.slowConsumer.code, CLOSE.slowConsumer.reason);
        },
        onError: (error) => log.warn({ err: error, stream }, 'subscription stream failed; catching up again shortly'),
      });
      channelFields.set(channel, name);
      stop = listen(stream, channel);
      const originalReturn = channel.return.bind(channel);
      channel.return = () => {
        stop();
        return originalReturn();
      };
      return channel;
    };
  }

  // The same event, document, variables and access level give the same result: it is executed and serialised once
  // and the same JSON goes to every subscriber that asked for it (see fan-out.ts).
  const results = new SharedResults();
  const deliveredBy = new Map<string, ReturnType<typeof delivered.labels>>();
  const sharedSubscribe = async (args: ExecutionArgs) => {
    const source = await createSourceEventStream(args);
    if (!(source instanceof EventChannel)) return source as ExecutionResult;
    const context = args.contextValue as SubscriptionContext;
    const access = `${context.identity.tenant}|${[...context.identity.roles].sort().join(',')}`;
    const group = `${print(args.document)}|${args.operationName ?? ''}|${JSON.stringify(args.variableValues ?? {})}|${access}`;
    const field = channelFields.get(source) ?? 'unknown';
    let counter = deliveredBy.get(field);
    if (!counter) deliveredBy.set(field, (counter = delivered.labels(field)));
    const deliveredCounter = counter;
    const subscriber = new Subscriber({
      socket: context.socket,
      id: context.subscriptionId,
      channel: source,
      results,
      group,
      execute: (event) => execute({ ...args, rootValue: event }),
      maxPending: limits.maxPendingEvents,
      maxBufferedBytes: limits.maxBufferedBytes,
      onSent: (loggedAt) => {
        lag.observe(Math.max(0, (Date.now() - loggedAt) / 1000));
        deliveredCounter.inc();
      },
      onSlow: () => {
        closed.inc({ reason: 'slow_consumer' });
        context.socket.close(CLOSE.slowConsumer.code, CLOSE.slowConsumer.reason);
      },
    });
    source.attach(subscriber.offer);
    return subscriber;
  };

  const wss = new WebSocketServer({ server: options.httpServer, path: options.path, maxPayload: 64 * 1024 });
  const states = new WeakMap<object, ConnectionState>();
  const disposable = useServer<Record<string, unknown>, { state?: ConnectionState }>(
    {
      schema,
      subscribe: sharedSubscribe,
      connectionInitWaitTimeout: 10_000,
      onConnect: async (ctx) => {
        try {
          const identity = await options.verifier.verify(tokenFrom(ctx.connectionParams));
          const state: ConnectionState = { identity, subscribes: [] };
          const msLeft = identity.expiresAt * 1000 - Date.now();
          state.expiryTimer = setTimeout(() => {
            closed.inc({ reason: 'token_expired' });
            ctx.extra.socket.close(CLOSE.tokenExpired.code, CLOSE.tokenExpired.reason);
          }, Math.max(0, Math.min(msLeft, 2 ** 31 - 1)));
          state.expiryTimer.unref();
          states.set(ctx.extra.socket, state);
          return true;
        } catch (error) {
          closed.inc({ reason: 'unauthenticated' });
          log.info({ reason: error instanceof AuthError ? error.reason : 'unknown' }, 'subscription connection refused');
          return false;
        }
      },
      onDisconnect: (ctx) => {
        const state = states.get(ctx.extra.socket);
        if (state?.expiryTimer) clearTimeout(state.expiryTimer);
      },
      onSubscribe: (ctx, id, payload) => {
        const state = states.get(ctx.extra.socket);
        if (!state) return [new GraphQLError('Not authenticated', { extensions: { code: 'UNAUTHENTICATED' } })];
        const now = Date.now();
        state.subscribes = state.subscribes.filter((t) => now - t < 60_000);
        state.subscribes.push(now);
        if (state.subscribes.length > limits.maxSubscribesPerMinute) {
          closed.inc({ reason: 'subscribe_flood' });
          ctx.extra.socket.close(CLOSE.subscribeFlood.code, CLOSE.subscribeFlood.reason);
          return [new GraphQLError(CLOSE.subscribeFlood.reason, { extensions: { code: 'RATE_LIMITED' } })];
        }
        // graphql-ws has already entered this subscription in ctx.subscriptions: it counts itself.
        if (Object.keys(ctx.subscriptions).length > limits.maxSubscriptionsPerConnection) {
          return [
            new GraphQLError(`At most ${limits.maxSubscriptionsPerConnection} subscriptions per connection`, {
              extensions: { code: 'OPERATION_LIMIT', limit: 'subscriptions', max: limits.maxSubscriptionsPerConnection },
            }),
          ];
        }
        let document;
        try {
          document = parse(payload.query, { maxTokens: options.operationLimits?.tokens ?? 2000 });
        } catch (error) {
          return [new GraphQLError(`Invalid document: ${(error as Error).message}`, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })];
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors.map((e) => new GraphQLError(e.message, { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }));
        if (options.operationLimits) {
          const inspected = inspectOperation(schema, document, payload.operationName, payload.variables);
          const over = inspected && checkOperationLimits(inspected.measure, options.operationLimits);
          if (over) return [operationLimitError(over)];
        }
        const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === 'OperationDefinition');
        const operation = payload.operationName ? operations.find((o) => o.name?.value === payload.operationName) : operations[0];
        if (operation?.operation !== 'subscription') {
          return [new GraphQLError('Only subscriptions are served over WebSocket; send queries and mutations over HTTP', { extensions: { code: 'BAD_REQUEST' } })];
        }
        const args: ExecutionArgs = {
          schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: { identity: state.identity, socket: ctx.extra.socket, subscriptionId: id, trace: newTrace() },
          fieldResolver,
        };
        return args;
      },
    },
    wss,
    15_000,
  );

  return {
    fetcher,
    results,
    async close() {
      clearInterval(healthTimer);
      results.close();
      await disposable.dispose();
      wss.close();
      await brokerSubscription.close();
    },
  };
}

/** A standalone copy of the API schema (the gateway's own stays untouched) whose Subscription fields we resolve. */
function buildSubscriptionSchema(apiSchema: GraphQLSchema): GraphQLSchema {
  const schema = buildASTSchema(parse(printSchema(apiSchema)));
  const subscription = schema.getSubscriptionType();
  if (subscription && !isObjectType(subscription)) throw new Error('Subscription root is not an object type');
  return schema;
}

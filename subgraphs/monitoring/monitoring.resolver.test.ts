import type { GraphQLSchema } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { subgraphSdl } from '../../lib/graphql/subgraph.js';
import type { DriftAlertEntity } from './drift-alert.entity.js';
import type { DriftReportEntity } from './drift-report.entity.js';
import { AuditOutcome, DriftAlertKind, DriftAlertStatus } from './monitoring.contracts.js';
import type { MonitoringDeps } from './schema.js';
import { aDriftAlert, aDriftReport, anAuditEvent, execute, MODEL_VERSION_ID, monitoringDefinition, openMonitoringDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
let deps: MonitoringDeps;
let schema: GraphQLSchema;

interface Page<N> {
  edges: { node: N; cursor: string }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  totalCount: number;
}

const day = (d: number) => new Date(Date.UTC(2026, 0, d));
const reports: DriftReportEntity[] = [];
const alerts: DriftAlertEntity[] = [];

beforeAll(async () => {
  ({ db, close } = await openMonitoringDatabase());
  deps = await monitoringDefinition.setup({ db } as Parameters<typeof monitoringDefinition.setup>[0]);
  schema = await monitoringDefinition.schema(deps);
  // acme: three daily reports of snunet (the last one drifted), one of unet; globex: one of snunet.
  for (const [start, createdAt] of [
    [1, day(2)],
    [2, day(3)],
    [3, day(4)],
  ] as const) {
    reports.push(await aDriftReport(db, 'acme', { windowStart: day(start), windowEnd: day(start + 1), createdAt, drifted: start === 3 }));
  }
  await aDriftReport(db, 'acme', { modelName: 'unet' });
  await aDriftReport(db, 'globex');
  alerts.push(await aDriftAlert(db, 'acme', { createdAt: day(4) }));
  alerts.push(
    await aDriftAlert(db, 'acme', {
      createdAt: day(5),
      kind: DriftAlertKind.MODEL_DRIFT,
      metric: 'iou',
      value: 0.4,
      threshold: 0.6,
      status: DriftAlertStatus.ACKNOWLEDGED,
      acknowledgedBy: 'admin@acme',
      acknowledgedAt: day(6),
    }),
  );
  alerts.push(await aDriftAlert(db, 'acme', { createdAt: day(6), modelName: 'unet' }));
  await aDriftAlert(db, 'globex');
});
afterAll(async () => {
  await close();
});

describe('schema', () => {
  it('declares DriftReport and DriftAlert as entities and refers to ModelVersion without resolving it', () => {
    const sdl = subgraphSdl(schema).replace(/"""[^]*?"""/g, '').replace(/\s+/g, ' ');
    expect(sdl).toContain('type DriftReport @key(fields: "id") {');
    expect(sdl).toContain('type DriftAlert @key(fields: "id") {');
    expect(sdl).toContain('type ModelVersion @key(fields: "id", resolvable: false) { id: ID! }');
    expect(sdl).toMatch(/type AuditEvent \{/);
    expect(sdl).toMatch(/auditEvents\([^)]*filter: AuditEventFilter[^)]*\): AuditEventConnection\b/);
    expect(sdl).toMatch(/driftReports\([^)]*modelName: String![^)]*\): DriftReportConnection!/);
    expect(sdl).toMatch(/driftAlerts\([^)]*status: DriftAlertStatus[^)]*\): DriftAlertConnection!/);
  });
});

describe('auditEvents', () => {
  const query = `query ($filter: AuditEventFilter, $first: Int, $after: String) {
    auditEvents(filter: $filter, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id actor roles operationName fieldName variables outcome errorCode traceId at } } } }`;
  type Events = { auditEvents: Page<Record<string, unknown>> };

  it('returns events with their redacted variables, filtered and paged', async () => {
    const at = (m: number) => new Date(Date.UTC(2026, 5, 1, 9, m));
    const denied = await deps.audit.record(
      db.fork(),
      anAuditEvent('gql', { actor: 'eve', outcome: AuditOutcome.DENIED, errorCode: 'FORBIDDEN', variables: { password: 'p', name: 'n' }, at: at(1) }),
    );
    await deps.audit.record(db.fork(), anAuditEvent('gql', { actor: 'eve', at: at(2) }));
    await deps.audit.record(db.fork(), anAuditEvent('gql', { actor: 'eve', at: at(3) }));
    await deps.audit.record(db.fork(), anAuditEvent('gql', { actor: 'sam', at: at(4) }));

    const filtered = await execute<Events>(schema, db, 'gql', query, { filter: { outcome: 'DENIED' } });
    expect(filtered.errors).toBeUndefined();
    expect(filtered.data?.auditEvents.edges.map((e) => e.node)).toEqual([
      {
        id: denied.id,
        actor: 'eve',
        roles: ['analyst'],
        operationName: 'Submit',
        fieldName: 'submitChangeDetectionJob',
        variables: { password: '[REDACTED]', name: 'n' },
        outcome: 'DENIED',
        errorCode: 'FORBIDDEN',
        traceId: null,
        at: at(1).toISOString(),
      },
    ]);

    const window = { actor: 'eve', from: at(2).toISOString(), to: at(4).toISOString() };
    const first = await execute<Events>(schema, db, 'gql', query, { filter: window, first: 1 });
    expect(first.data?.auditEvents).toMatchObject({ totalCount: 2, pageInfo: { hasNextPage: true } });
    const second = await execute<Events>(schema, db, 'gql', query, { filter: window, first: 1, after: first.data?.auditEvents.pageInfo.endCursor });
    expect(second.data?.auditEvents.pageInfo.hasNextPage).toBe(false);
    expect([first, second].map((r) => r.data?.auditEvents.edges[0]?.node.at)).toEqual([at(3).toISOString(), at(2).toISOString()]);

    expect((await execute<Events>(schema, db, 'someone-else', query)).data?.auditEvents.totalCount).toBe(0);
  });

  it('refuses a malformed cursor and an empty time range with BAD_USER_INPUT', async () => {
    expect((await execute(schema, db, 'gql', query, { after: '!!' })).codes).toEqual(['BAD_USER_INPUT']);
    const range = { from: '2026-06-02T00:00:00Z', to: '2026-06-01T00:00:00Z' };
    expect((await execute(schema, db, 'gql', query, { filter: range })).codes).toEqual(['BAD_USER_INPUT']);
  });
});

describe('driftReports', () => {
  const query = `query ($modelName: String!, $from: DateTimeISO, $to: DateTimeISO, $first: Int, $after: String) {
    driftReports(modelName: $modelName, from: $from, to: $to, first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id modelName modelVersion { id } windowStart windowEnd sampleCount metrics drifted createdAt } } } }`;
  type Reports = { driftReports: Page<{ id: string; [field: string]: unknown }> };

  it("lists one model's reports of your tenant, newest first, with their metrics", async () => {
    const { data, errors } = await execute<Reports>(schema, db, 'acme', query, { modelName: 'snunet' });
    expect(errors).toBeUndefined();
    expect(data?.driftReports.totalCount).toBe(3);
    expect(data?.driftReports.edges.map((e) => e.node.id)).toEqual(reports.map((r) => r.id).reverse());
    expect(data?.driftReports.edges[0]?.node).toMatchObject({
      modelName: 'snunet',
      modelVersion: { id: MODEL_VERSION_ID },
      windowStart: day(3).toISOString(),
      windowEnd: day(4).toISOString(),
      sampleCount: 200,
      metrics: { bands: [{ band: 0, psi: 0.05, wasserstein: 0.01, ks: 0.04 }], mmd: 0.002, changeFraction: 0.1 },
      drifted: true,
    });
  });

  it('keeps the reports whose window overlaps [from, to)', async () => {
    const ids = async (from: Date | null, to: Date | null) =>
      (await execute<Reports>(schema, db, 'acme', query, { modelName: 'snunet', from: from?.toISOString(), to: to?.toISOString() })).data?.driftReports.edges.map(
        (e) => e.node.id,
      );
    expect(await ids(day(2), day(3))).toEqual([reports[1]!.id]);
    expect(await ids(day(2), null)).toEqual([reports[2]!.id, reports[1]!.id]);
    expect(await ids(null, day(2))).toEqual([reports[0]!.id]);
    expect(await ids(day(10), null)).toEqual([]);
  });

  it('pages, and refuses a malformed cursor with BAD_USER_INPUT', async () => {
    const first = await execute<Reports>(schema, db, 'acme', query, { modelName: 'snunet', first: 2 });
    const rest = await execute<Reports>(schema, db, 'acme', query, { modelName: 'snunet', first: 2, after: first.data?.driftReports.pageInfo.endCursor });
    expect([...first.data!.driftReports.edges, ...rest.data!.driftReports.edges].map((e) => e.node.id)).toEqual(reports.map((r) => r.id).reverse());
    expect(rest.data?.driftReports.pageInfo.hasNextPage).toBe(false);
    expect((await execute(schema, db, 'acme', query, { modelName: 'snunet', after: 'WyJ4Il0' })).codes).toEqual(['BAD_USER_INPUT']);
  });
});

describe('driftAlerts', () => {
  const query = `query ($modelName: String, $status: DriftAlertStatus) {
    driftAlerts(modelName: $modelName, status: $status) {
      totalCount edges { node { id modelName modelVersion { id } kind metric value threshold windowStart windowEnd status acknowledgedBy acknowledgedAt createdAt } } } }`;
  type Alerts = { driftAlerts: Page<{ id: string; [field: string]: unknown }> };
  const ids = async (variables: Record<string, unknown>) =>
    (await execute<Alerts>(schema, db, 'acme', query, variables)).data?.driftAlerts.edges.map((e) => e.node.id);

  it("lists your tenant's alerts newest first, filtered by model and status", async () => {
    expect(await ids({})).toEqual([alerts[2]!.id, alerts[1]!.id, alerts[0]!.id]);
    expect(await ids({ modelName: 'snunet' })).toEqual([alerts[1]!.id, alerts[0]!.id]);
    expect(await ids({ status: 'OPEN' })).toEqual([alerts[2]!.id, alerts[0]!.id]);
    expect(await ids({ modelName: 'snunet', status: 'ACKNOWLEDGED' })).toEqual([alerts[1]!.id]);
    const { data } = await execute<Alerts>(schema, db, 'acme', query, { status: 'ACKNOWLEDGED' });
    expect(data?.driftAlerts.edges[0]?.node).toMatchObject({
      kind: 'MODEL_DRIFT',
      metric: 'iou',
      value: 0.4,
      threshold: 0.6,
      acknowledgedBy: 'admin@acme',
      acknowledgedAt: day(6).toISOString(),
      modelVersion: { id: MODEL_VERSION_ID },
    });
    expect((await execute<Alerts>(schema, db, 'nobody', query)).data?.driftAlerts.totalCount).toBe(0);
  });
});

describe('references', () => {
  it("resolve a report or alert of the caller's tenant, and another tenant's as null", async () => {
    const query = `query ($representations: [_Any!]!) { _entities(representations: $representations) {
      ... on DriftReport { id drifted } ... on DriftAlert { id metric } } }`;
    const representations = [
      { __typename: 'DriftReport', id: reports[2]!.id },
      { __typename: 'DriftAlert', id: alerts[0]!.id },
    ];
    const mine = await execute<{ _entities: unknown[] }>(schema, db, 'acme', query, { representations });
    expect(mine.data?._entities).toEqual([
      { id: reports[2]!.id, drifted: true },
      { id: alerts[0]!.id, metric: 'psi.band0' },
    ]);
    const theirs = await execute<{ _entities: unknown[] }>(schema, db, 'globex', query, { representations });
    expect(theirs.data?._entities).toEqual([null, null]);
  });
});

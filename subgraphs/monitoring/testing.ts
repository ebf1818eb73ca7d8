// Builders for the monitoring subgraph's tests: a migrated database of its own per test file, valid records that a
// test overrides field by field, and GraphQL execution as a given identity. Imported by *.test.ts only.
import { graphql, GraphQLError, type GraphQLSchema } from 'graphql';
import { pino } from 'pino';
import { testDatabaseUrl } from '../../test/support/test-database.js';
import { openDatabase, type Database } from '../../lib/db.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { loadMonitoringConfig } from './config.js';
import type { AuditEventRecord } from './audit.service.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftReportEntity } from './drift-report.entity.js';
import { AuditOutcome, DriftAlertKind } from './monitoring.contracts.js';
import { monitoringSubgraph } from './schema.js';

export const monitoringDefinition = monitoringSubgraph(loadMonitoringConfig({ MONITORING_PORT: '0', AUDIT_QUEUE: 'monitoring.audit' }));

/** PGlite in memory, or a fresh PostgreSQL database when TEST_DATABASE_URL is set; `close` drops it. */
export async function openMonitoringDatabase(): Promise<{ db: Database; close(): Promise<void> }> {
  const target = await testDatabaseUrl();
  const db = await openDatabase({
    schema: 'monitoring',
    entities: monitoringDefinition.entities,
    migrations: monitoringDefinition.migrations,
    databaseUrl: target.url,
    stateDir: null,
  });
  return {
    db,
    async close() {
      await db.close();
      await target.drop();
    },
  };
}

export const MODEL_VERSION_ID = '0b6f9c1e-2f7a-4c1d-8e55-3f0a9d2b7c41';

export function anAuditEvent(tenant: string, overrides: Partial<AuditEventRecord> = {}): AuditEventRecord {
  return {
    tenant,
    actor: `analyst@${tenant}`,
    roles: ['analyst'],
    operationName: 'Submit',
    fieldName: 'submitChangeDetectionJob',
    variables: { modelName: 'snunet' },
    outcome: AuditOutcome.SUCCESS,
    ...overrides,
  };
}

export function aDriftReport(db: Database, tenant: string, overrides: Partial<DriftReportEntity> = {}) {
  const em = db.fork();
  const report = em.create(DriftReportEntity, {
    tenant,
    modelName: 'snunet',
    modelVersionId: MODEL_VERSION_ID,
    windowStart: new Date('2026-01-01T00:00:00Z'),
    windowEnd: new Date('2026-01-02T00:00:00Z'),
    sampleCount: 200,
    metrics: { bands: [{ band: 0, psi: 0.05, wasserstein: 0.01, ks: 0.04 }], mmd: 0.002, changeFraction: 0.1 },
    drifted: false,
    ...overrides,
  });
  return em.persistAndFlush(report).then(() => report);
}

export function aDriftAlert(db: Database, tenant: string, overrides: Partial<DriftAlertEntity> = {}) {
  const em = db.fork();
  const alert = em.create(DriftAlertEntity, {
    tenant,
    modelName: 'snunet',
    modelVersionId: MODEL_VERSION_ID,
    kind: DriftAlertKind.DATA_DRIFT,
    metric: 'psi.band0',
    value: 0.31,
    threshold: 0.2,
    windowStart: new Date('2026-01-01T00:00:00Z'),
    windowEnd: new Date('2026-01-02T00:00:00Z'),
    ...overrides,
  });
  return em.persistAndFlush(alert).then(() => alert);
}

/** The extensions.code of the API error a call fails with. */
export async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GraphQLError) return error.extensions.code;
    throw error;
  }
  throw new Error('expected an API error');
}

/** Runs an operation against the subgraph schema as an admin of `tenant`, on a fresh entity manager. */
export async function execute<T = Record<string, unknown>>(
  schema: GraphQLSchema,
  db: Database,
  tenant: string,
  source: string,
  variables: Record<string, unknown> = {},
) {
  const contextValue: RequestContext = {
    identity: { subject: `admin@${tenant}`, tenant, roles: ['admin'], token: '', expiresAt: 0 },
    em: db.fork(),
    trace: { traceId: '0'.repeat(32), spanId: '0'.repeat(16) },
    log: pino({ level: 'silent' }),
  };
  const result = await graphql({ schema, source, variableValues: variables, contextValue });
  return {
    data: result.data as T | null | undefined,
    errors: result.errors,
    codes: (result.errors ?? []).map((e) => e.extensions.code),
  };
}

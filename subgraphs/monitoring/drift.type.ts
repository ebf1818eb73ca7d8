import { GraphQLJSONObject } from 'graphql-scalars';
import { Directive, Field, Float, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import { Connection } from '../../lib/graphql/connection.js';
import type { DriftAlertEntity } from './drift-alert.entity.js';
import type { DriftReportEntity } from './drift-report.entity.js';
import { DriftAlertKind, DriftAlertStatus } from './monitoring.contracts.js';

registerEnumType(DriftAlertKind, {
  name: 'DriftAlertKind',
  description: 'DATA_DRIFT: the inputs moved away from the reference; MODEL_DRIFT: quality on labelled feedback fell',
});
registerEnumType(DriftAlertStatus, { name: 'DriftAlertStatus' });

/** The models subgraph owns ModelVersion; this subgraph only refers to it by id. */
@Directive('@key(fields: "id", resolvable: false)')
@ObjectType('ModelVersion')
export class ModelVersionRef {
  @Field(() => ID)
  id!: string;
}

const modelVersionRef = (id: string) => Object.assign(new ModelVersionRef(), { id });

@Directive('@key(fields: "id")')
@ObjectType({ description: "Drift scores of one model version's inputs over one time window" })
export class DriftReport {
  @Field(() => ID)
  id!: string;

  @Field()
  modelName!: string;

  @Field(() => ModelVersionRef, { nullable: true })
  modelVersion!: ModelVersionRef | null;

  @Field()
  windowStart!: Date;

  @Field()
  windowEnd!: Date;

  @Field(() => Int, { description: 'Inputs the scores were computed from' })
  sampleCount!: number;

  @Field(() => GraphQLJSONObject, {
    description:
      'Per band PSI and Wasserstein-1 of the intensities; KS test and PSI of the change fractions; MMD² of the tile embeddings with its permutation p-value; the thresholds used and the alerts raised',
  })
  metrics!: Record<string, unknown>;

  @Field({ description: 'Whether any metric was over its threshold' })
  drifted!: boolean;

  @Field()
  createdAt!: Date;
}

@Directive('@key(fields: "id")')
@ObjectType({ description: 'One drift metric of one model version over its threshold' })
export class DriftAlert {
  @Field(() => ID)
  id!: string;

  @Field()
  modelName!: string;

  @Field(() => ModelVersionRef, { nullable: true })
  modelVersion!: ModelVersionRef | null;

  @Field(() => DriftAlertKind)
  kind!: DriftAlertKind;

  @Field({ description: 'e.g. psi.band2, mmd, iou' })
  metric!: string;

  @Field(() => Float)
  value!: number;

  @Field(() => Float)
  threshold!: number;

  @Field()
  windowStart!: Date;

  @Field()
  windowEnd!: Date;

  @Field(() => DriftAlertStatus)
  status!: DriftAlertStatus;

  @Field(() => String, { nullable: true })
  acknowledgedBy!: string | null;

  @Field(() => Date, { nullable: true })
  acknowledgedAt!: Date | null;

  @Field()
  createdAt!: Date;
}

export const DriftReportConnection = Connection(DriftReport, 'DriftReport');
export const DriftAlertConnection = Connection(DriftAlert, 'DriftAlert');

export function toDriftReport(e: DriftReportEntity): DriftReport {
  return Object.assign(new DriftReport(), {
    id: e.id,
    modelName: e.modelName,
    modelVersion: modelVersionRef(e.modelVersionId),
    windowStart: e.windowStart,
    windowEnd: e.windowEnd,
    sampleCount: e.sampleCount,
    metrics: e.metrics,
    drifted: e.drifted,
    createdAt: e.createdAt,
  });
}

export function toDriftAlert(e: DriftAlertEntity): DriftAlert {
  return Object.assign(new DriftAlert(), {
    id: e.id,
    modelName: e.modelName,
    modelVersion: e.modelVersionId ? modelVersionRef(e.modelVersionId) : null,
    kind: e.kind,
    metric: e.metric,
    value: e.value,
    threshold: e.threshold,
    windowStart: e.windowStart,
    windowEnd: e.windowEnd,
    status: e.status,
    acknowledgedBy: e.acknowledgedBy,
    acknowledgedAt: e.acknowledgedAt,
    createdAt: e.createdAt,
  });
}

import { Entity, Index, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';

/** A named model of one tenant, or of every tenant when its tenant is `*` (PLATFORM_TENANT). */
@Entity({ tableName: 'registered_model' })
@Index({
  name: 'registered_model_tenant_created_index',
  expression: 'create index "registered_model_tenant_created_index" on "models"."registered_model" ("tenant", "created_at" desc, "id" desc)',
})
@Unique({ properties: ['tenant', 'name'] })
export class RegisteredModelEntity {
  [OptionalProps]?: 'id' | 'description' | 'createdAt' | 'updatedAt' | 'latestVersionNumber' | 'evaluationDatasetVersionId';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  /** Lookups by tenant use the (tenant, created_at, id) index above. */
  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'text' })
  description: string = '';

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date = new Date();

  /**
   * The frozen dataset version its versions are evaluated on (setEvaluationDataset); null: the dataset version of the
   * training run of the Production version, else of the latest trained version.
   */
  @Property({ type: 'text', nullable: true })
  evaluationDatasetVersionId: string | null = null;

  /** Number of the newest version (0 before the first); incremented under a row lock. */
  @Property({ type: 'integer' })
  latestVersionNumber: number = 0;
}

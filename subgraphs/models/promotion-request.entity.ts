import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { PROMOTION_STATUSES, PromotionStatus, type PromotionEvidence } from './lifecycle.contracts.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { RegisteredModelEntity } from './registered-model.entity.js';

/**
 * A request to move a STAGING version to PRODUCTION, with the evidence it was made on; decided (approved or
 * rejected) once, by an approver other than the requester, or withdrawn (CANCELLED) while pending by its requester
 * or an admin of the tenant. At most one PENDING request per version. `decidedBy`/`decidedAt`/`decisionReason` say
 * who closed it, when and why, whichever way it was closed.
 */
@Entity({ tableName: 'promotion_request' })
@Index({
  name: 'promotion_request_model_created_index',
  expression: 'create index "promotion_request_model_created_index" on "models"."promotion_request" ("registered_model_id", "created_at" desc, "id" desc)',
})
@Index({
  name: 'promotion_request_one_pending_unique',
  expression: 'create unique index "promotion_request_one_pending_unique" on "models"."promotion_request" ("model_version_id") where "status" = \'PENDING\'',
})
export class PromotionRequestEntity {
  [OptionalProps]?: 'id' | 'status' | 'createdAt' | 'decidedBy' | 'decidedAt' | 'decisionReason';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @ManyToOne(() => RegisteredModelEntity, { deleteRule: 'cascade' })
  registeredModel!: Rel<RegisteredModelEntity>;

  @ManyToOne(() => ModelVersionEntity, { deleteRule: 'cascade' })
  modelVersion!: Rel<ModelVersionEntity>;

  @Enum({ items: () => PROMOTION_STATUSES, type: 'text' })
  status: PromotionStatus = PromotionStatus.PENDING;

  @Property({ type: 'text' })
  requestedBy!: string;

  @Property({ type: 'text' })
  reason!: string;

  @Property({ type: 'json' })
  evidence!: PromotionEvidence;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'text', nullable: true })
  decidedBy: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  decidedAt: Date | null = null;

  @Property({ type: 'text', nullable: true })
  decisionReason: string | null = null;
}

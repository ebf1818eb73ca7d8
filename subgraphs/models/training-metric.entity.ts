import { Entity, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { TrainingRunEntity } from './training-run.entity.js';

/** One value of one metric at one step; (run, name, step) is its identity, so a redelivered report changes nothing. */
@Entity({ tableName: 'training_metric' })
@Unique({ properties: ['run', 'name', 'step'] })
export class TrainingMetricEntity {
  [OptionalProps]?: 'id' | 'epoch' | 'recordedAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => TrainingRunEntity, { deleteRule: 'cascade' })
  run!: Rel<TrainingRunEntity>;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'integer' })
  step!: number;

  @Property({ type: 'integer', nullable: true })
  epoch: number | null = null;

  @Property({ type: 'double' })
  value!: number;

  @Property({ type: 'timestamptz' })
  recordedAt: Date = new Date();
}

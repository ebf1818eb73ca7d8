// Drift alerts clients can subscribe to through the gateway, as they are raised.
import { Arg, Field, ID, Int, ObjectType, Resolver, Subscription } from 'type-graphql';
import { servedByGateway } from '../../lib/graphql/subscriptions.js';
import { DriftAlert } from './drift.type.js';

@ObjectType({ description: 'A drift alert was raised' })
export class DriftAlertEvent {
  @Field(() => Int)
  sequence!: number;

  @Field()
  occurredAt!: string;

  @Field(() => ID)
  alertId!: string;

  @Field()
  modelName!: string;

  @Field(() => DriftAlert)
  alert!: DriftAlert;
}

@Resolver()
export class DriftEventsResolver {
  @Subscription(() => DriftAlertEvent, { subscribe: servedByGateway, description: 'Drift alerts of your tenant, optionally for one model' })
  driftAlerts(
    @Arg('modelName', () => String, { nullable: true }) _modelName?: string,
    @Arg('afterSequence', () => Int, { nullable: true }) _afterSequence?: number,
  ): DriftAlertEvent {
    return servedByGateway();
  }
}

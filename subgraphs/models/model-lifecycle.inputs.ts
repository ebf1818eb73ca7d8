import { Field, ID, InputType } from 'type-graphql';

@InputType({ description: 'Asks for a STAGING version whose evaluation gate passed to be promoted to PRODUCTION' })
export class RequestPromotionInput {
  @Field(() => ID)
  modelVersionId!: string;

  @Field({ description: 'Why this version should serve; shown to the approver and kept in the history' })
  reason!: string;
}

@InputType({ description: 'Points an alias (champion, challenger, …) at a version; moves it if another version of the model had it' })
export class SetModelAliasInput {
  @Field(() => ID)
  modelVersionId!: string;

  @Field({ description: 'A lowercase letter, then up to 39 lowercase letters, digits, "-" or "_"; stage names are reserved' })
  alias!: string;

  @Field(() => String, { nullable: true, description: 'Kept in the history' })
  reason?: string | null;
}

@InputType({ description: 'Removes an alias from a model' })
export class RemoveModelAliasInput {
  @Field()
  modelName!: string;

  @Field()
  alias!: string;

  @Field(() => String, { nullable: true, description: 'Kept in the history' })
  reason?: string | null;
}

import { Migration } from '../../../lib/db.js';

// Evaluation of versions on a frozen dataset version: the evaluation record of a version (metrics, confusion counts,
// or why it failed) and the evaluation dataset chosen for a registered model. DDL derived from the entities.
export class Migration0005Evaluation extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "models"."model_version" add column "evaluation" jsonb null;`);
    this.addSql(`alter table "models"."registered_model" add column "evaluation_dataset_version_id" text null;`);
  }
}

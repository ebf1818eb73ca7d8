// Prints the DDL MikroORM derives from a subgraph's entities, to write (and review) a migration from.
// Usage: npm run build && node scripts/migration-sql.mjs <pg-schema> dist/subgraphs/<name>/<file>.entity.js ...
import 'reflect-metadata';
import { resolve } from 'node:path';
import { MikroORM } from '@mikro-orm/core';
import { PGliteDriver } from 'mikro-orm-pglite';

const [schema, ...files] = process.argv.slice(2);
const entities = [];
for (const file of files) {
  const module = await import(resolve(file));
  entities.push(...Object.values(module).filter((value) => typeof value === 'function'));
}
const orm = await MikroORM.init({ driver: PGliteDriver, dbName: 'postgres', schema, entities, discovery: { disableDynamicFileAccess: true } });
console.log(await orm.getSchemaGenerator().getCreateSchemaSQL({ wrap: false }));
await orm.close();

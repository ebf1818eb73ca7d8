// `npm start`: the whole platform in one process on the embedded defaults (PGlite, in-process broker, local
// storage, development signing key) unless DATABASE_URL / AMQP_URL / STORAGE_URL / AUTH_JWKS_URL say otherwise.
import 'reflect-metadata';
import { issueDevToken } from './lib/auth.js';
import { exitOnConfigError, onShutdown } from './lib/main.js';
import { startPlatform } from './lib/platform.js';

try {
  const platform = await startPlatform({ env: process.env });
  const { config } = platform.runtime;
  const token = config.AUTH_JWKS_URL
    ? null
    : await issueDevToken(config.STATE_DIR, { subject: 'dev-admin', tenant: 'dev', roles: ['admin', 'approver', 'ml-engineer', 'analyst', 'viewer'] });
  const base = platform.runtime.publicUrl;
  const lines = [
    '',
    'Land cover change detection platform is running',
    `  GraphQL API   ${base}/graphql`,
    `  GraphiQL      ${platform.runtime.introspection ? `${base}/graphiql${token ? `#token=${token}` : ''}` : '(off: INTROSPECTION=false)'}`,
    `  health        ${base}/healthz   readiness ${base}/readyz   metrics ${base}/metrics`,
    `  state folder  ${config.STATE_DIR}`,
    `  backends      database ${config.DATABASE_URL ? 'PostgreSQL' : 'PGlite (embedded)'}, broker ${platform.runtime.broker.kind}, storage ${platform.runtime.store.kind}`,
    ...(token
      ? [
          '',
          'Development token (admin of tenant "dev", valid 12 h); more with: npm run token -- --role analyst --tenant acme',
          token,
          '',
          'Try:',
          `  curl -s ${base}/graphql -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \\`,
          `    -d '{"query":"{ datasets { totalCount } jobs { totalCount } trainingRuns { totalCount } auditEvents { totalCount } }"}'`,
        ]
      : []),
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
  onShutdown(() => platform.close());
} catch (error) {
  exitOnConfigError(error);
}

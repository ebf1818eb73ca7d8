import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';

export const monitoringEnv = z.object({
  MONITORING_PORT: portEnv(4004),
  MONITORING_DATABASE_URL: z.string().optional(),
});
export type MonitoringConfig = Readonly<z.infer<typeof monitoringEnv>>;

export const loadMonitoringConfig = (env: Env): MonitoringConfig => parseConfig(monitoringEnv, env);

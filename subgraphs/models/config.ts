import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';

export const modelsEnv = z.object({
  MODELS_PORT: portEnv(4002),
  MODELS_DATABASE_URL: z.string().optional(),
});
export type ModelsConfig = Readonly<z.infer<typeof modelsEnv>>;

export const loadModelsConfig = (env: Env): ModelsConfig => parseConfig(modelsEnv, env);

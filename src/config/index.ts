export { ENVIRONMENT, type LoadedConfig, loadConfig } from './load.js';
export { type Config, configSchema } from './schema.js';

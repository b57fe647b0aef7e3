export { startNatsAuth } from './service.ts';
export type { NatsAuth, NatsAuthOptions } from './service.ts';
export { authorizationConfig } from './server-config.ts';
export type { CalloutPublicKeys } from './server-config.ts';
export { SecretKey, ensureCalloutKeys } from './keys.ts';
export type { SecretStore, StoredSecret } from './keys.ts';
export { AGENT_SERVICE_ACCOUNT, NODE_NAME_EXTRA, SERVICE_ACCOUNTS, admit } from './identity.ts';
export type { ReviewedToken } from './identity.ts';

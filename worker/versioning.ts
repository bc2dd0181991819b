/**
 * Worker Deployment versioning from the environment. With MANAGED_SMTP_WORKER_DEPLOYMENT and
 * MANAGED_SMTP_WORKER_BUILD_ID set, the worker polls as version `<deployment>/<buildId>` and only receives tasks of
 * the deployment's current (or ramping) version, so a release is: start the new version's workers, make it current
 * (`temporal worker deployment set-current-version`), drain the old ones. Workflows default to AUTO_UPGRADE:
 * instance workflows never end, so pinning them would keep old workers alive forever; they move to the new version
 * at their next task, which replay tests and `patched()` keep deterministic. Neither set: unversioned, as before.
 */
import type { WorkerDeploymentOptions } from '@temporalio/worker';

/** Names the Worker Deployment the worker belongs to. */
export const WORKER_DEPLOYMENT_ENV = 'MANAGED_SMTP_WORKER_DEPLOYMENT';
/** This worker's build id within the deployment (an image tag or a git commit). */
export const WORKER_BUILD_ID_ENV = 'MANAGED_SMTP_WORKER_BUILD_ID';

const NAME = /^[A-Za-z0-9][\w.:-]{0,254}$/;

/** The deployment options the environment asks for, or one problem line naming the variable. */
export function parseWorkerVersioning(env: NodeJS.ProcessEnv): {
  options?: WorkerDeploymentOptions;
  problem?: string;
} {
  const deploymentName = env[WORKER_DEPLOYMENT_ENV]?.trim() ?? '';
  const buildId = env[WORKER_BUILD_ID_ENV]?.trim() ?? '';
  if (!deploymentName && !buildId) return {};
  if (!deploymentName || !buildId) {
    const missing = deploymentName ? WORKER_BUILD_ID_ENV : WORKER_DEPLOYMENT_ENV;
    return {
      problem: `${missing}: must be set together with ${deploymentName ? WORKER_DEPLOYMENT_ENV : WORKER_BUILD_ID_ENV}`,
    };
  }
  for (const [name, value] of [
    [WORKER_DEPLOYMENT_ENV, deploymentName],
    [WORKER_BUILD_ID_ENV, buildId],
  ]) {
    if (!NAME.test(value)) return { problem: `${name}: must be letters, digits, '.', '_', ':' or '-' (at most 255)` };
  }
  return {
    options: {
      version: { deploymentName, buildId },
      useWorkerVersioning: true,
      defaultVersioningBehavior: 'AUTO_UPGRADE',
    },
  };
}

// The `mcp-mesh` command: parse arguments, dispatch. Kept thin; the work is in main.ts and friends.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, parseConfig } from './config/load.ts';
import { formatProblem, PolicyError } from './policy/load.ts';

const CERTS_USAGE = 'mcp-mesh certs --out DIR --service NAME[.NS] [--service …] [--trust-domain TD] [--days N]';

const USAGE = `usage:
  mcp-mesh sidecar [--config mesh.yaml]   run a sidecar (no file: configured by MESH_* variables alone)
  mcp-mesh policy validate FILE…        check policy files or folders (exit 1 on any error)
  mcp-mesh injector --cert F --key F    run the Kubernetes sidecar injector webhook (docs/injector.md)
  ${CERTS_USAGE}
                                        development CA and mTLS certificates (docs/security.md)
  mcp-mesh demo                         run a local demo mesh on loopback and print what happened
  mcp-mesh help                         this text`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'sidecar':
      return runSidecar(rest);
    case 'policy':
      return runPolicy(rest);
    case 'injector': {
      const { runInjector } = await import('./injector/webhook.ts');
      return runInjector(rest);
    }
    case 'certs':
      return runCerts(rest);
    case 'demo': {
      const { runDemo } = await import('./demo/demo.ts');
      return runDemo(rest);
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`mcp-mesh: unknown command ${command ?? '(none)'}\n${USAGE}\n`);
      return 2;
  }
}

async function runSidecar(args: string[]): Promise<number> {
  let configPath: string | undefined;
  try {
    ({ values: { config: configPath } } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true }));
  } catch (err) {
    process.stderr.write(`mcp-mesh sidecar: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  let config;
  try {
    // Without a file, the MESH_* environment variables are the whole config (as the injector sets them).
    config = configPath ? loadConfigFile(configPath) : parseConfig('{}', undefined, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
  // Loaded here, not at the top: `policy validate` and `help` need none of the sidecar's parts.
  const { startSidecar } = await import('./main.ts');
  let sidecar;
  try {
    sidecar = await startSidecar(config);
  } catch (err) {
    // A broken policy set stops the start with its positioned problems, one line each, not a stack trace.
    if (err instanceof PolicyError) {
      for (const problem of err.problems) process.stderr.write(`policy error: ${formatProblem(problem)}\n`);
      return 1;
    }
    // A config that only start-up can judge (e.g. Kubernetes discovery outside a pod without a kubeconfig).
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    // A listen address already in use (or not allowed): one line too, naming the address.
    if ((err as NodeJS.ErrnoException).syscall === 'listen') {
      process.stderr.write(`config error: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      sidecar.logger.info({ signal }, 'signal received');
      sidecar.shutdown().then(resolve, (err: unknown) => { sidecar.logger.error({ err }, 'shutdown failed'); resolve(); });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

async function runPolicy(args: string[]): Promise<number> {
  const [subcommand, ...paths] = args;
  if (subcommand !== 'validate' || paths.length === 0) {
    process.stderr.write(`mcp-mesh policy: usage: mcp-mesh policy validate FILE_OR_FOLDER…\n`);
    return 2;
  }
  const { validatePolicies } = await import('./policy/validate.ts');
  const { ok, errors } = validatePolicies(paths);
  for (const line of ok) process.stdout.write(`${line}\n`);
  for (const line of errors) process.stderr.write(`${line}\n`);
  return errors.length > 0 ? 1 : 0;
}

async function runCerts(args: string[]): Promise<number> {
  let values: { out?: string; service?: string[]; 'trust-domain'?: string; days?: string };
  try {
    ({ values } = parseArgs({ args, options: { out: { type: 'string' }, service: { type: 'string', multiple: true }, 'trust-domain': { type: 'string' }, days: { type: 'string' } }, strict: true }));
  } catch (err) {
    process.stderr.write(`mcp-mesh certs: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const days = values.days === undefined ? undefined : Number(values.days);
  if (!values.out || !values.service?.length || (days !== undefined && !(Number.isInteger(days) && days > 0))) {
    process.stderr.write(`mcp-mesh certs: usage: ${CERTS_USAGE}\n`);
    return 2;
  }
  const { writeDevCerts } = await import('./security/certs.ts');
  try {
    const result = writeDevCerts({ out: values.out, trustDomain: values['trust-domain'] ?? 'cluster.local', services: values.service, days });
    process.stdout.write(`${result.caCreated ? 'created a development CA' : 'used the existing CA'} in ${values.out}\n`);
    for (const id of result.ids) process.stdout.write(`issued ${id}\n`);
    for (const file of result.files) process.stdout.write(`wrote ${file}\n`);
    process.stdout.write('for development only: short-lived certificates from a CA whose key sits next to them\n');
    return 0;
  } catch (err) {
    process.stderr.write(`mcp-mesh certs: ${(err as Error).message}\n`);
    return 1;
  }
}

/**
 * Guest agent entry point (bundled to dist/agent/agent.mjs and started by the guest init).
 * Placeholder until the agent issue lands: it announces itself on the console so the boot path is real.
 */
process.stdout.write(`vrun-agent: starting (node ${process.version})\n`);

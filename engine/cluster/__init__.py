"""Running a job beyond this machine, on an existing cluster engine (SLURM).

The job runs on the cluster's nodes through sbatch/srun; the engine there never opens the home's database (no
SQLite over a shared filesystem): it works against a scratch store on node-local disk, and rank 0 streams what
the job writes there (status, progress, metrics, heartbeats, result, artifacts) as append-only JSON lines to
the job's folder on the shared filesystem (`jobs/<id>/cluster/events-<slurm id>.jsonl`). The local runner of
the `slurm` slot submits the job and follows that file into the home's database (`engine.cluster.follow`).
"""

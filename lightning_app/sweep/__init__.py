"""`lightning sweep`: a grid of experiment settings as SLURM job arrays (or local runs), their states and
the ablation report. SLURM schedules, Lightning's ``SLURMEnvironment`` runs DDP and requeues on the
warning signal, W&B draws the dashboards; this package only writes the job script and reads results."""

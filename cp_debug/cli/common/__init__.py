"""What the commands share: option groups (the model options, samples, fix's graph options), help pages, errors mapped
to one line and an exit code, output, progress bars."""

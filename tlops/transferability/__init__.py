"""Transferability estimation: score how well a frozen backbone's features fit a task before training anything
(`scores`: LogME, H-score; `rank`: the candidates of `tlops rank`)."""

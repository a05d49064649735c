"""The personalisation recommender: catalogue and eligibility, context features, River bandit
policies (plus random and popularity baselines), the attribution join that turns feedback into
labels, prequential evaluation, offline IPS evaluation and checkpoints.

Pure Python and River only (no Kafka, Redis or Faust): the processor (:mod:`processors.reco`),
the closed-loop simulator and the benchmark all drive the same classes.
"""

"""The label-free search: train a candidate contrastively (candidate), score one trial (trial), the ask/tell loop
with resume (loop), TPE (tpe), training-free scores (zero_cost) and the executors that run trials in parallel."""

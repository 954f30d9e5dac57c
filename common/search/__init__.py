"""The label-free search: train a candidate contrastively (candidate), score one trial (trial), the ask/tell loop
with resume (loop), the algorithms behind one ask/tell interface (strategy: tpe, evolution), early stopping of poor
trials (early_stop), training-free scores (zero_cost), the executors that run trials in parallel, and the strategies'
comparison report (strategy_report)."""

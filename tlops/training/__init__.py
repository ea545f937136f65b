"""Training building blocks shared by the strategies: the loop, objectives, callbacks, batching, head fitting."""

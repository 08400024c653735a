"""Production monitoring (layer 2): drift of served traffic, its reports and metrics, and the
retraining it triggers exactly once per cause."""

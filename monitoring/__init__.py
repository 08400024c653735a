"""Production monitoring: drift of served traffic and the retraining it triggers."""

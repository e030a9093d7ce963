"""Running Callwright as several replicas that share Redis: the call directory's routing, the event relay between
replicas, liveness and take-over of a dead replica's calls, and N worker processes on one machine."""

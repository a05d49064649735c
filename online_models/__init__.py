"""Online (incremental) models built on River: access-anomaly scoring and the recommender.

They follow River's learn_one / predict_one protocol; the security and personalisation issues add
them here.
"""

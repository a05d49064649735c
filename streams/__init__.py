"""Kafka backbone: schema registry, Avro codec, producer SDK, topics, Faust app and dead letters."""

"""The stream engine: batch-oriented, transactional stages on aiokafka (docs/engine.md).

A stage owns input partitions through a consumer group. For each owned partition it folds a
batch of records into the partition's state and commits, in one Kafka transaction of that
partition's own producer, everything the batch produced, the state's changelog and the input
offsets: a `read_committed` reader sees each batch's effects exactly once or not at all.
"""

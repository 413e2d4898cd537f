"""AWS quotas that sqsq respects, as documented constants.

Each constant names the AWS page it comes from. Validation errors quote these
names, so a user who hits one knows which AWS limit applies.
"""

from __future__ import annotations

#: Largest SQS message body plus message attributes, in bytes (1 MiB).
#: "Amazon SQS message quotas" — Message size.
SQS_MAX_MESSAGE_BYTES = 1_048_576

#: Largest total payload of one SendMessageBatch call, in bytes (1 MiB).
#: "Amazon SQS message quotas" — Message size (batched messages).
SQS_MAX_BATCH_BYTES = 1_048_576

#: Entries per SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch,
#: and messages per ReceiveMessage (MaxNumberOfMessages).
#: "Amazon SQS message quotas" — Batched message ID / Message throughput.
SQS_MAX_BATCH_ENTRIES = 10

#: Largest DelaySeconds for a message, in seconds (15 minutes).
#: "Amazon SQS message quotas" — Delay queue.
SQS_MAX_DELAY_S = 900

#: Longest long-polling wait (WaitTimeSeconds), in seconds.
#: "Amazon SQS short and long polling".
SQS_MAX_WAIT_TIME_S = 20

#: Longest visibility timeout, counted from the first receipt, in seconds (12 hours).
#: "Amazon SQS visibility timeout".
SQS_MAX_VISIBILITY_TIMEOUT_S = 43_200

#: Message attributes per message.
#: "Amazon SQS message quotas" — Message attributes.
SQS_MAX_MESSAGE_ATTRIBUTES = 10

#: Longest message retention period, in seconds (14 days).
#: "Amazon SQS queue quotas" / "Using dead-letter queues in Amazon SQS".
SQS_MAX_RETENTION_S = 1_209_600

#: Queue name length; FIFO queue names end in ``.fifo`` (included).
#: "Amazon SQS queue quotas" — Queue name.
SQS_MAX_QUEUE_NAME_CHARS = 80

#: Longest MessageGroupId (FIFO ordering group, or a fair queue's tenant on a
#: standard queue), characters: alphanumerics and punctuation.
#: "SendMessage" (Amazon SQS API reference) — MessageGroupId; "Amazon SQS fair queues".
SQS_MAX_MESSAGE_GROUP_ID_CHARS = 128

#: Largest DynamoDB item, attribute names and values together, in bytes (400 KB).
#: "Service, account, and table quotas in Amazon DynamoDB" — Item size.
DYNAMODB_MAX_ITEM_BYTES = 409_600

#: Put/delete requests per BatchWriteItem call.
#: "BatchWriteItem" API reference.
DYNAMODB_MAX_BATCH_WRITE_ITEMS = 25

#: Keys per BatchGetItem call.
#: "BatchGetItem" API reference.
DYNAMODB_MAX_BATCH_GET_ITEMS = 100

#: Deepest nesting of arrays/objects sqsq accepts in a message body or a return
#: value (not an AWS quota: Python's JSON and pydantic recurse, and a value nested
#: ~1,000 deep exhausts the interpreter's stack). Bodies deeper than this are dead
#: letters (``undecodable``); return values, ``result_not_serializable``.
MAX_JSON_DEPTH = 100

#: Largest DynamoDB partition key value, in bytes (UTF-8).
#: "Service, account, and table quotas in Amazon DynamoDB" — Partition key length.
DYNAMODB_MAX_PARTITION_KEY_BYTES = 2048

#: Schedule names, 1-64 of letters, digits, '-', '_' and '.'.
#: "CreateSchedule" (EventBridge Scheduler API reference) — Name.
SCHEDULER_MAX_NAME_CHARS = 64
#: Largest target Input of a schedule, bytes (256 KB: "Quotas for Amazon
#: EventBridge Scheduler", payload size). A long countdown's body over it goes to S3
#: (``payload_bucket``), or fails in the producer (``MessageTooLarge``).
SCHEDULER_MAX_INPUT_BYTES = 262_144

#: FlexibleTimeWindow.MaximumWindowInMinutes, 1-1440 minutes.
#: "FlexibleTimeWindow" (EventBridge Scheduler API reference).
SCHEDULER_MAX_FLEXIBLE_WINDOW_MIN = 1440

#: RetryPolicy.MaximumRetryAttempts, 0-185 (also the default).
#: "RetryPolicy" (EventBridge Scheduler API reference).
SCHEDULER_MAX_RETRY_ATTEMPTS = 185

#: Longest rate() period sqsq takes, days: the span of the years a cron() expression
#: may name, 1970-2199 ("Cron expressions reference"), so every fire time is a date
#: sqsq and Scheduler both compute. EventBridge documents no largest rate() value
#: ("Schedule types in EventBridge Scheduler": a positive number).
SCHEDULER_MAX_RATE_DAYS = 84_006

#: ScheduleExpression, 1-256 characters.
#: "CreateSchedule" (EventBridge Scheduler API reference) — ScheduleExpression.
SCHEDULER_MAX_EXPRESSION_CHARS = 256

#: RetryPolicy.MaximumEventAgeInSeconds, 60-86400 seconds (the maximum is the default).
#: "RetryPolicy" (EventBridge Scheduler API reference).
SCHEDULER_MIN_EVENT_AGE_S = 60
SCHEDULER_MAX_EVENT_AGE_S = 86_400

#: Longest Lambda function timeout, seconds ("Lambda quotas": function timeout 900 s).
LAMBDA_MAX_TIMEOUT_S = 900
#: Longest batching window of an SQS event source mapping, seconds
#: ("CreateEventSourceMapping": MaximumBatchingWindowInSeconds, 0–300).
LAMBDA_MAX_BATCHING_WINDOW_S = 300

#: Range of an SQS event source's ``ScalingConfig.MaximumConcurrency``.
#: "Configuring maximum concurrency for Amazon SQS event sources" (AWS Lambda
#: Developer Guide) — 2-1000.
LAMBDA_MIN_SQS_MAXIMUM_CONCURRENCY = 2
LAMBDA_MAX_SQS_MAXIMUM_CONCURRENCY = 1000
#: Longest ECS container stopTimeout on Fargate, seconds ("ContainerDefinition",
#: stopTimeout: at most 120 s for tasks on Fargate).
FARGATE_MAX_STOP_TIMEOUT_S = 120

#: Longest Step Functions task token, characters (``$$.Task.Token``).
#: "SendTaskSuccess" (AWS Step Functions API reference) — taskToken, 1-2048.
STEPFUNCTIONS_MAX_TASK_TOKEN_CHARS = 2048
#: Largest output of SendTaskSuccess, bytes (UTF-8; 256 KiB).
#: "SendTaskSuccess" (AWS Step Functions API reference) — output, 0-262144.
STEPFUNCTIONS_MAX_OUTPUT_BYTES = 262_144
#: Longest ``error`` of SendTaskFailure, characters.
#: "SendTaskFailure" (AWS Step Functions API reference) — error, 0-256.
STEPFUNCTIONS_MAX_ERROR_CHARS = 256
#: Longest ``cause`` of SendTaskFailure, characters.
#: "SendTaskFailure" (AWS Step Functions API reference) — cause, 0-32768.
STEPFUNCTIONS_MAX_CAUSE_CHARS = 32_768

#: Most metric queries in one GetMetricData call.
#: "GetMetricData" (Amazon CloudWatch API reference) — MetricDataQueries, at most 500.
CLOUDWATCH_MAX_METRIC_DATA_QUERIES = 500
#: CloudWatch's period of the SQS metrics, seconds ("Available CloudWatch metrics for
#: Amazon SQS": SQS sends them to CloudWatch every minute).
SQS_METRICS_PERIOD_S = 60

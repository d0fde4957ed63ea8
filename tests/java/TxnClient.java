// Drives Sluice with the official Java client: a transactional producer
// commits, aborts and is fenced by a second instance; read_committed and
// read_uncommitted consumers count what they see. Prints one JSON line.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnClient {
    static KafkaProducer<String, String> producer(String bootstrap, String id) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", id);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        producer.initTransactions();
        return producer;
    }

    static void send(KafkaProducer<String, String> p, String topic, String tag, int n) {
        for (int i = 0; i < n; i++) {
            p.send(new ProducerRecord<>(topic, 0, "k" + i, tag + "-" + i));
        }
        p.flush();
    }

    static List<String> read(String bootstrap, String topic, String isolation) {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("isolation.level", isolation);
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            Map<TopicPartition, Long> end = consumer.endOffsets(List.of(tp));
            long deadline = System.currentTimeMillis() + 30_000;
            while (consumer.position(tp) < end.get(tp) && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    values.add(r.value());
                }
            }
        }
        return values;
    }

    static String json(List<String> values) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < values.size(); i++) {
            if (i > 0) b.append(',');
            b.append('"').append(values.get(i)).append('"');
        }
        return b.append(']').toString();
    }

    public static void main(String[] args) {
        String bootstrap = args[0], topic = args[1], id = args[2];
        KafkaProducer<String, String> p = producer(bootstrap, id);
        p.beginTransaction();
        send(p, topic, "commit", 5);
        p.commitTransaction();
        p.beginTransaction();
        send(p, topic, "abort", 3);
        p.abortTransaction();

        p.beginTransaction();
        send(p, topic, "zombie", 2);
        KafkaProducer<String, String> p2 = producer(bootstrap, id);
        String fenced = "none";
        try {
            p.commitTransaction();
        } catch (ProducerFencedException e) {
            fenced = "ProducerFencedException";
        } catch (KafkaException e) {
            fenced = e.getClass().getSimpleName();
        }
        p.close(Duration.ofSeconds(5));
        p2.beginTransaction();
        send(p2, topic, "live", 1);
        p2.commitTransaction();
        p2.close(Duration.ofSeconds(5));

        System.out.println("{\"fenced\":\"" + fenced + "\",\"committed\":"
                + json(read(bootstrap, topic, "read_committed")) + ",\"uncommitted\":"
                + json(read(bootstrap, topic, "read_uncommitted")) + "}");
    }
}

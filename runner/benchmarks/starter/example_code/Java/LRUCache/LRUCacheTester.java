import junit.framework.TestCase;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;

/**
 * A least-recently-used cache: a hash map for lookups plus a doubly linked list that keeps
 * the entries in recency order, so get, put and eviction all run in constant time.
 */
class LRUCache<K, V> {

  private static class Node<K, V> {
    K key;
    V value;
    Node<K, V> prev;
    Node<K, V> next;

    Node(K key, V value) {
      this.key = key;
      this.value = value;
    }
  }

  private final HashMap<K, Node<K, V>> index = new HashMap<K, Node<K, V>>();
  private final Node<K, V> head = new Node<K, V>(null, null);
  private final Node<K, V> tail = new Node<K, V>(null, null);
  private int capacity;
  private int hits;
  private int misses;
  private int evictions;

  public LRUCache(int capacity) {
    if (capacity <= 0) {
      throw new IllegalArgumentException("capacity must be positive, got " + capacity);
    }
    this.capacity = capacity;
    head.next = tail;
    tail.prev = head;
  }

  private void unlink(Node<K, V> node) {
    node.prev.next = node.next;
    node.next.prev = node.prev;
    node.prev = null;
    node.next = null;
  }

  private void pushFront(Node<K, V> node) {
    node.next = head.next;
    node.prev = head;
    head.next.prev = node;
    head.next = node;
  }

  private void evictOldest() {
    Node<K, V> oldest = tail.prev;
    unlink(oldest);
    index.remove(oldest.key);
    evictions++;
  }

  public V get(K key) {
    Node<K, V> node = index.get(key);
    if (node == null) {
      misses++;
      return null;
    }
    hits++;
    unlink(node);
    pushFront(node);
    return node.value;
  }

  public V put(K key, V value) {
    Node<K, V> node = index.get(key);
    if (node != null) {
      V old = node.value;
      node.value = value;
      unlink(node);
      pushFront(node);
      return old;
    }
    if (index.size() == capacity) {
      evictOldest();
    }
    node = new Node<K, V>(key, value);
    index.put(key, node);
    pushFront(node);
    return null;
  }

  public V remove(K key) {
    Node<K, V> node = index.remove(key);
    if (node == null) {
      return null;
    }
    unlink(node);
    return node.value;
  }

  public boolean containsKey(K key) {
    return index.containsKey(key);
  }

  public int size() {
    return index.size();
  }

  public void resize(int newCapacity) {
    if (newCapacity <= 0) {
      throw new IllegalArgumentException("capacity must be positive, got " + newCapacity);
    }
    capacity = newCapacity;
    while (index.size() > capacity) {
      evictOldest();
    }
  }

  /** Keys from the most to the least recently used. */
  public List<K> keysInOrder() {
    List<K> keys = new ArrayList<K>();
    for (Node<K, V> node = head.next; node != tail; node = node.next) {
      keys.add(node.key);
    }
    return keys;
  }

  public double hitRate() {
    int lookups = hits + misses;
    return lookups == 0 ? 0.0 : (double) hits / lookups;
  }

  public int getEvictions() {
    return evictions;
  }
}

public class LRUCacheTester extends TestCase {

  private LRUCache<String, Integer> makeCache(int capacity, String... keys) {
    LRUCache<String, Integer> cache = new LRUCache<String, Integer>(capacity);
    for (int i = 0; i < keys.length; i++) {
      cache.put(keys[i], i);
    }
    return cache;
  }

  public void testPutAndGet() {
    LRUCache<String, Integer> cache = makeCache(3, "a", "b", "c");
    assertEquals(Integer.valueOf(0), cache.get("a"));
    assertEquals(Integer.valueOf(2), cache.get("c"));
    assertNull(cache.get("zzz"));
    assertEquals(3, cache.size());
  }

  public void testEvictsLeastRecentlyUsed() {
    LRUCache<String, Integer> cache = makeCache(3, "a", "b", "c");
    cache.get("a");
    cache.put("d", 3);
    assertFalse(cache.containsKey("b"));
    assertTrue(cache.containsKey("a"));
    assertEquals(1, cache.getEvictions());
    assertEquals("[d, a, c]", cache.keysInOrder().toString());
  }

  public void testUpdateMovesToFront() {
    LRUCache<String, Integer> cache = makeCache(2, "x", "y");
    assertEquals(Integer.valueOf(0), cache.put("x", 10));
    cache.put("z", 5);
    assertNull(cache.get("y"));
    assertEquals(Integer.valueOf(10), cache.get("x"));
    assertEquals("[x, z]", cache.keysInOrder().toString());
  }

  public void testRemove() {
    LRUCache<String, Integer> cache = makeCache(4, "a", "b", "c");
    assertEquals(Integer.valueOf(1), cache.remove("b"));
    assertNull(cache.remove("b"));
    assertEquals(2, cache.size());
    assertEquals("[c, a]", cache.keysInOrder().toString());
    cache.put("d", 7);
    cache.put("e", 8);
    assertEquals(0, cache.getEvictions());
  }

  public void testResizeEvictsOldest() {
    LRUCache<String, Integer> cache = makeCache(5, "a", "b", "c", "d", "e");
    cache.get("b");
    cache.resize(2);
    assertEquals("[b, e]", cache.keysInOrder().toString());
    assertEquals(3, cache.getEvictions());
    cache.put("f", 9);
    assertEquals("[f, b]", cache.keysInOrder().toString());
  }

  public void testHitRate() {
    LRUCache<String, Integer> cache = makeCache(2, "a", "b");
    assertEquals(0.0, cache.hitRate(), 1e-12);
    cache.get("a");
    cache.get("b");
    cache.get("c");
    cache.get("a");
    assertEquals(0.75, cache.hitRate(), 1e-12);
  }

  public void testBadCapacity() {
    try {
      new LRUCache<String, Integer>(0);
      fail("expected IllegalArgumentException");
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("0"));
    }
    LRUCache<String, Integer> cache = makeCache(1, "a");
    try {
      cache.resize(-1);
      fail("expected IllegalArgumentException");
    } catch (IllegalArgumentException expected) {
      assertEquals(1, cache.size());
    }
  }

  public void testManyOperations() {
    LRUCache<Integer, Integer> cache = new LRUCache<Integer, Integer>(50);
    for (int i = 0; i < 1000; i++) {
      cache.put(i % 75, i);
      if (i % 3 == 0) {
        cache.get((i * 7) % 75);
      }
    }
    assertEquals(50, cache.size());
    List<Integer> keys = cache.keysInOrder();
    assertEquals(50, keys.size());
    assertEquals(Integer.valueOf((999 * 7) % 75), keys.get(0));
    assertEquals(Integer.valueOf(999 % 75), keys.get(1));
    int evictions = cache.getEvictions();
    assertTrue("evictions=" + evictions, evictions > 100);
  }
}

// What a tester's code may do in the launcher's JVM: read system properties and the files of its
// working folder, nothing else. (The tester shares this class's unnamed package: nothing here but
// confine() is reachable from it, and that asks for permissions it lacks.) The code the launcher names as trusted (itself and the JUnit jars,
// by class path entry) and the JDK's own modules keep every permission; every other class path
// entry (the tester's classes, the program's jars) is confined. The Security Manager checks each
// frame of the stack, so a trusted frame called from confined code (JUnit's assertion, a JDK API)
// has the confined frame's permissions; threads inherit the context of the code that starts them.
//
// Confined code therefore cannot write a file, end the JVM but at once and without a record, start a process, load a native
// library, set an accessible flag (reflection past access checks, sun.misc.Unsafe's instance),
// read /proc, or use the management, JFR or attach interfaces (tests/evaluation/test_hostile_answers.py
// shows each). The JDK's Security Manager exists up to Java 23; java_check refuses a newer JVM.
import java.io.File;
import java.io.FilePermission;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.URL;
import java.security.AccessController;
import java.security.CodeSource;
import java.security.Permission;
import java.security.PermissionCollection;
import java.security.Permissions;
import java.security.Policy;
import java.security.PrivilegedAction;
import java.security.ProtectionDomain;
import java.util.HashSet;
import java.util.PropertyPermission;
import java.util.Set;

@SuppressWarnings("removal")
final class RunnerTesterPolicy extends Policy {
    private final Set<String> trusted;
    private final Permissions confined = new Permissions();

    private RunnerTesterPolicy(Set<String> trusted, String workdir) {
        this.trusted = trusted;
        confined.add(new PropertyPermission("*", "read"));
        confined.add(new FilePermission(workdir, "read"));
        confined.add(new FilePermission(workdir + File.separator + "-", "read"));
        confined.setReadOnly();
    }

    /** Confine every class path entry but {@code trustedEntries} (":"-separated), from here on. */
    static void confine(String trustedEntries) throws Exception {
        Set<String> trusted = new HashSet<>();
        for (String entry : trustedEntries.split(":")) {
            if (!entry.isEmpty()) {
                trusted.add(new File(entry).getCanonicalPath());
            }
        }
        Policy.setPolicy(new RunnerTesterPolicy(trusted, new File(".").getCanonicalPath()));
        PrintStream err = System.err;
        // JDK 17 warns on stderr that the Security Manager is deprecated; the tester's stderr stays its own
        System.setErr(new PrintStream(OutputStream.nullOutputStream()));
        try {
            System.setSecurityManager(new Manager());
        } finally {
            System.setErr(err);
        }
    }

    // The application class loader grants every class path class the right to exit (exitVM) whatever
    // the policy says: exit and halt ask for a permission of this project's instead, which only the
    // trusted code holds (AllPermission). Confined code that ends the JVM ends it as it asked, but
    // at once (no shutdown hook runs) and so without the launcher's record: a runtime error, as before.
    private static final class Manager extends SecurityManager {
        private static final Permission END_JVM = new RuntimePermission("runner.endJvm");

        @Override
        public void checkExit(int status) {
            try {
                checkPermission(END_JVM);
            } catch (SecurityException confined) {
                AccessController.doPrivileged((PrivilegedAction<Void>) () -> {
                    Runtime.getRuntime().halt(status);
                    return null;
                });
            }
        }
    }

    private boolean isTrusted(ProtectionDomain domain) {
        CodeSource source = domain.getCodeSource();
        URL location = source == null ? null : source.getLocation();
        if (location == null || !"file".equals(location.getProtocol())) {
            return true; // the JDK's modules (jrt:) and the boot class path
        }
        String path = location.getPath();
        if (path.length() > 1 && path.endsWith("/")) {
            path = path.substring(0, path.length() - 1);
        }
        return trusted.contains(path);
    }

    @Override
    public boolean implies(ProtectionDomain domain, Permission permission) {
        return isTrusted(domain) || confined.implies(permission);
    }

    @Override
    public PermissionCollection getPermissions(ProtectionDomain domain) {
        Permissions granted = new Permissions();
        if (isTrusted(domain)) {
            granted.add(new java.security.AllPermission());
        } else {
            confined.elements().asIterator().forEachRemaining(granted::add);
        }
        return granted;
    }
}
